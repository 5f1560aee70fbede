"""Stack profile loading: valid files load, every malformed one is a UsageError."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pytest_stackcheck.profile import (
    SHIPPED_STACKS,
    find_stack,
    load_profile,
    with_ports,
    zero_ports,
)

LOCAL = SHIPPED_STACKS / "local.toml"


def write(tmp_path: Path, text: str, name: str = "stack.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_profiles_load():
    local = load_profile(LOCAL)
    prod = load_profile(SHIPPED_STACKS / "prod.example.toml")

    assert local.doc.stack.provisioner == "local"
    assert set(local.doc.services) == {
        "singularity",
        "centralcloud",
        "genesis",
        "llm-server",
    }
    assert prod.doc.services["llm-server"].port == 3000
    assert prod.doc.postgres.databases == ("singularity", "centralcloud", "genesis")
    assert prod.doc.policy.destructive is False


def test_unknown_stack_lists_available(tmp_path):
    with pytest.raises(pytest.UsageError) as raised:
        find_stack("nope", [SHIPPED_STACKS])
    message = str(raised.value)
    assert "--stack=nope" in message
    assert "local" in message
    assert "prod.example" in message


def test_wrong_type_names_file_key_value(tmp_path):
    text = LOCAL.read_text().replace(
        "[services.genesis]\nport = 0", '[services.genesis]\nport = "x"'
    )
    path = write(tmp_path, text)
    with pytest.raises(pytest.UsageError) as raised:
        load_profile(path)
    message = str(raised.value)
    assert str(path) in message
    assert "services.genesis.port" in message
    assert "'x'" in message
    assert "expected an integer" in message
    assert "fix:" in message


def test_unknown_key_suggests_close_name(tmp_path):
    text = LOCAL.read_text().replace("[postgres]\n", "[postgres]\ndatabse = 'x'\n")
    with pytest.raises(
        pytest.UsageError, match=r"postgres\.databse.*did you mean 'databases'"
    ):
        load_profile(write(tmp_path, text))


def test_missing_required_key(tmp_path):
    text = LOCAL.read_text().replace('provisioner = "local"\n', "")
    with pytest.raises(
        pytest.UsageError, match=r"stack\.provisioner.*missing required key"
    ):
        load_profile(write(tmp_path, text))


def test_route_to_unknown_service(tmp_path):
    text = LOCAL.read_text().replace('service = "llm-server"', 'service = "llm"')
    with pytest.raises(pytest.UsageError, match=r"nginx\.routes\[1\]\.service.*'llm'"):
        load_profile(write(tmp_path, text))


def test_unknown_public_component(tmp_path):
    text = LOCAL.read_text() + '\n[security]\npublic = ["nginx", "postgresql"]\n'
    with pytest.raises(pytest.UsageError, match=r"security\.public.*'postgresql'"):
        load_profile(write(tmp_path, text))


def test_port_zero_rejected_for_existing(tmp_path):
    text = LOCAL.read_text().replace(
        'provisioner = "local"', 'provisioner = "existing"'
    )
    with pytest.raises(pytest.UsageError, match="only works for the local provisioner"):
        load_profile(write(tmp_path, text))


def test_loss_percent_out_of_range(tmp_path):
    text = LOCAL.read_text() + "\n[chaos]\nnetwork_loss_percent = 75\n"
    with pytest.raises(
        pytest.UsageError, match=r"chaos\.network_loss_percent.*75.*use 1 to 50"
    ):
        load_profile(write(tmp_path, text))


def test_missing_site_file(tmp_path):
    text = LOCAL.read_text().replace("[nginx]\n", "[nginx]\nsite = 'absent.conf.j2'\n")
    with pytest.raises(pytest.UsageError, match=r"nginx\.site.*does not exist"):
        load_profile(write(tmp_path, text))


def test_invalid_toml_syntax(tmp_path):
    with pytest.raises(pytest.UsageError, match="is not valid TOML"):
        load_profile(write(tmp_path, "[stack\nname = 1"))


def test_ports_resolved():
    doc = load_profile(LOCAL).doc
    keys = zero_ports(doc)
    resolved = with_ports(doc, {key: 10000 + i for i, key in enumerate(keys)})

    assert "services.llm-server.port" in keys
    assert zero_ports(resolved) == []
    assert resolved.services["llm-server"].port == 10000 + keys.index(
        "services.llm-server.port"
    )


# Malformed profiles for the property test: the shipped profile with a
# required key removed, a value replaced by one of another type, or an unknown
# key added to a table of the model.
_VALID = tomllib.loads(LOCAL.read_text())
_JUNK = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
_REQUIRED = [
    ("stack",),
    ("stack", "name"),
    ("stack", "provisioner"),
    ("services",),
    ("services", "genesis", "port"),
    ("postgres",),
    ("postgres", "databases"),
    ("nats",),
    ("nginx",),
    ("nginx", "routes"),
]


def _paths(document, prefix=()):
    for key, value in document.items():
        yield (*prefix, key)
        if isinstance(value, dict):
            yield from _paths(value, (*prefix, key))


_ALL_PATHS = list(_paths(_VALID))


def _get(document, path):
    for key in path:
        document = document[key]
    return document


def _model_tables():
    # Tables with free-form keys (services, health fields) accept new keys.
    tables = [()]
    for path in _ALL_PATHS:
        if not isinstance(_get(_VALID, path), dict):
            continue
        if path == ("services",) or path[-1] == "fields":
            continue
        tables.append(path)
    return tables


def _kind(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


def _mutate(document, action, path, junk):
    import copy

    result = copy.deepcopy(document)
    if action == "add":
        _get(result, path)["zz_unknown_key"] = junk
        return result
    parent = _get(result, path[:-1])
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = junk
    return result


def _dump(value) -> str:
    import json

    if isinstance(value, dict):
        inner = ", ".join(
            f"{json.dumps(str(k))} = {_dump(v)}" for k, v in value.items()
        )
        return "{ " + inner + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_dump(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def _to_toml(document) -> str:
    return "\n".join(f'"{key}" = {_dump(value)}' for key, value in document.items())


@st.composite
def malformed_documents(draw):
    action = draw(st.sampled_from(["delete", "retype", "add"]))
    junk = draw(_JUNK)
    if action == "delete":
        return _mutate(_VALID, action, draw(st.sampled_from(_REQUIRED)), junk)
    if action == "add":
        return _mutate(_VALID, action, draw(st.sampled_from(_model_tables())), junk)

    path = draw(st.sampled_from(_ALL_PATHS).filter(lambda p: "fields" not in p))
    original = _get(_VALID, path)
    assume(_kind(junk) != _kind(original))
    return _mutate(_VALID, action, path, junk)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(document=malformed_documents())
def test_malformed_profiles_raise_usage_error(tmp_path, document):
    target = write(tmp_path, _to_toml(document))
    with pytest.raises(pytest.UsageError) as raised:
        load_profile(target)
    assert str(target) in str(raised.value)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(text=st.text(max_size=200))
def test_arbitrary_text_raises_usage_error(tmp_path, text):
    target = write(tmp_path, text)
    with pytest.raises(pytest.UsageError):
        load_profile(target)
