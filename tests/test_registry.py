import pytest

from edgetl.errors import UnknownNameError
from edgetl.registry import Registry


def test_registry_rejects_duplicates_and_never_guesses():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1, aliases=("a",))
    assert reg.get("a") == 1 and reg.canonical("a") == "alpha"
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha", 2)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("beta", 2, aliases=("a",))
    with pytest.raises(UnknownNameError, match="did you mean 'alpha'"):
        reg.get("alpah")
    with pytest.raises(UnknownNameError) as err:
        reg.get("zzz")
    assert "did you mean" not in err.value.message
