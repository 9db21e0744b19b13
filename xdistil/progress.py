"""How long-running loops write durations in their progress lines (training steps, teacher passes)."""


def format_seconds(seconds: float) -> str:
    """`4m05s` under an hour, `1h02m` from an hour on."""
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
