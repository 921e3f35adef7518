"""Other projects' artifacts in and out: MotionGPT's and T2M-GPT's checkpoints
(:mod:`~motion_align.interop.motiongpt`) and Guo et al.'s released evaluator
(:mod:`~motion_align.interop.t2m_evaluator`), read without running pickled code
(:mod:`~motion_align.interop.checkpoint_files`, :mod:`~motion_align.interop.plain_pickle`); your own motions
as a HumanML3D folder (:mod:`~motion_align.interop.own_motions`: joint arrays, BVH files through
:mod:`~motion_align.interop.bvh` and the rig maps of :mod:`~motion_align.interop.rigs`, captions through
:mod:`~motion_align.interop.caption_files` and :mod:`~motion_align.interop.caption_tagging`); and motions
out to other tools as BVH, NPZ or JSON files (:mod:`~motion_align.interop.export`,
:mod:`~motion_align.interop.bvh_writer`)."""

#: The flag that lets a checkpoint reader fall back to unpickling (only for files the user trusts).
TRUST_FLAG = "--trust-checkpoint"
