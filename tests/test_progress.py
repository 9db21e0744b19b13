from xdistil.progress import format_seconds


def test_durations_read_in_minutes_and_seconds_then_hours_and_minutes():
    assert format_seconds(0) == "0m00s"
    assert format_seconds(245.9) == "4m05s"
    assert format_seconds(3599) == "59m59s"
    assert format_seconds(3600) == "1h00m"
    assert format_seconds(3 * 3600 + 125) == "3h02m"
