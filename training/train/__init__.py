"""The trainer: the loop (``loop``), one optimization step (``step``), and what they rest on.

``checkpoint`` (atomic, complete, resumable), ``distributed`` (torchrun, DDP / FSDP2),
``param_groups`` and ``schedules`` (DINOv2's optimizer recipe), ``logging`` (JSONL) and
``export`` (the EMA teacher -> the plugin's model folder). Run through ``python -m training``.
"""
