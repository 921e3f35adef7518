"""Other projects' artifacts in and out: MotionGPT's and T2M-GPT's checkpoints
(:mod:`~motion_align.interop.motiongpt`), read without running pickled code
(:mod:`~motion_align.interop.checkpoint_files`)."""
