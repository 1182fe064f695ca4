"""Names of user activations (derive.names): what `derive generate NAME EXPRESSION` registers, and how
a name resolves wherever an activation is accepted."""
import json
import threading

import pytest

from derive import names
from derive.errors import ExpressionError, SpecificationError
from derive.expressions import A
from derive.specification import ACTIVATIONS, Activation, resolve_activation


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DERIVE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_no_names_are_registered_in_a_fresh_cache_and_none_is_created_by_asking(cache):
    assert names.registered() == {} and names.lookup("mish") is None
    assert not cache.exists()


def test_a_registered_name_resolves_to_its_expression_under_that_name(cache):
    names.register("mine", "a*tanh(a)")
    activation = resolve_activation("mine")
    assert activation.name == "mine" and activation.expression == "a*tanh(a)"
    assert activation.expr == Activation.from_expression("a*tanh(a)").expr
    assert json.loads((cache / names.FILE).read_text()) == {"mine": "a*tanh(a)"}


def test_registering_a_name_again_replaces_what_it_stood_for_and_keeps_the_others(cache):
    names.register("mine", "a*tanh(a)")
    names.register("other", "sin(a)")
    names.register("mine", "a/2")
    assert names.registered() == {"mine": "a/2", "other": "sin(a)"}
    assert resolve_activation("mine").expr == A / 2


def test_built_in_names_win_and_expressions_still_parse(cache):
    assert resolve_activation("tanh") is ACTIVATIONS["tanh"]
    assert resolve_activation("a").expr == A                  # the identity: 'a' is the variable
    assert resolve_activation("a*sigmoid(a)").name.startswith("expr_")


@pytest.mark.parametrize("name, message", [
    ("tanh", "built-in"),
    ("a", "name of the expression language"),
    ("pi", "name of the expression language"),
    ("E", "name of the expression language"),
    ("exp", "name of the expression language"),
    ("Piecewise", "name of the expression language"),
    ("expr_0123456789ab", "unnamed expression"),
    ("no good", "identifier"),
    ("", "empty"),
])
def test_names_that_cannot_be_registered_are_refused(cache, name, message):
    with pytest.raises((SpecificationError, ExpressionError), match=message):
        names.register(name, "a")
    assert names.registered() == {}


def test_an_unknown_name_says_where_names_come_from_where_it_could_have_been_registered(cache):
    with pytest.raises(ExpressionError, match="neither a built-in activation .* nor a name that `derive generate`"):
        resolve_activation("mish")
    for never_a_name in ("exp", "lambda", "_x"):
        with pytest.raises(ExpressionError) as error:
            resolve_activation(never_a_name)
        assert "derive generate" not in str(error.value)


def test_surrounding_spaces_do_not_hide_a_registered_name(cache):
    names.register("mine", "a/3")
    assert resolve_activation(" mine ").name == "mine"


def test_concurrent_registrations_lose_no_name(cache):
    threads = [threading.Thread(target=names.register, args=("name%d" % i, "a*%d" % i)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert names.registered() == {"name%d" % i: "a*%d" % i for i in range(16)}


def test_a_names_file_that_derive_did_not_write_is_a_clear_error(cache):
    cache.mkdir()
    for text in ("not json", "[1, 2]", '{"mine": 3}', '{"tanh": "a"}', '{"../x": "a"}'):
        (cache / names.FILE).write_text(text)
        with pytest.raises(SpecificationError, match="not a file of activation names"):
            resolve_activation("mine")
        assert resolve_activation("tanh") is ACTIVATIONS["tanh"]   # built-ins never read the file
    (cache / names.FILE).unlink()
    (cache / names.FILE).mkdir()
    with pytest.raises(SpecificationError, match="cannot read the activation names"):
        resolve_activation("mine")
