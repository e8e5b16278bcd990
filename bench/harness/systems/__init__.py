"""Systems under test, each behind the same small interface (:class:`base.System`)."""
