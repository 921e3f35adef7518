"""Models and judges that score motions: the evaluator (metrics), the retrieval reward, the event judge."""
