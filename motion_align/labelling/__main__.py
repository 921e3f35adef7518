"""``python -m motion_align.labelling``: ``motion-align label`` without the rest of the command line."""

from motion_align.labelling.launch import main

raise SystemExit(main())
