"""The one reconnect backoff (issue 18: three hand-written copies in the writer, the hub and the listener)."""

from __future__ import annotations

from reasonq.shared.backoff import Backoff


def test_delays_double_up_to_the_cap_and_reset_after_a_success() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    assert [backoff.next_s() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_s() == 0.1
