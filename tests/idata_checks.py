"""Shared check of the test suite: two InferenceData objects hold the same bits."""

ARVIZ_GROUPS = ("posterior", "log_likelihood", "posterior_predictive", "observed_data")


def assert_same_groups(first, second, groups=ARVIZ_GROUPS):
    """Same variables, dims and bytes in each of ``groups`` (e.g. in memory vs from a file)."""
    for group in groups:
        a, b = getattr(first, group), getattr(second, group)
        assert set(a.data_vars) == set(b.data_vars), group
        for name in a.data_vars:
            assert a[name].dims == b[name].dims, (group, name)
            assert a[name].values.tobytes() == b[name].values.tobytes(), (group, name)
