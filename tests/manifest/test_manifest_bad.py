"""Every tests/manifest/bad/<case>.yaml must fail with exactly the text in <case>.expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from tenantshift.manifest import ManifestError, load_manifest

BAD = Path(__file__).parent / "bad"
CASES = sorted(p.stem for p in BAD.glob("*.yaml"))

#: Fixtures mark secret values with this word; it must never reach a message.
SECRET_MARK = "SECRET"
#: Rendered secrets that break the YAML they land in (unquoted, '*' is an alias, '!' a tag).
ENVIRON = {
    "BROKEN_PASSWORD": f'hunter2-{SECRET_MARK}" : [x',
    "ALIAS_PASSWORD": f"*Tr0ub4dor-{SECRET_MARK}",
    "TAG_PASSWORD": f"!CorrectHorse-{SECRET_MARK}",
}


def test_fixture_set_is_complete() -> None:
    expected = sorted(p.stem for p in BAD.glob("*.expected"))
    assert expected == CASES, "every bad/<case>.yaml needs a <case>.expected and vice versa"
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES)
def test_bad_manifest(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Load by relative name, as a user would type it, so messages start with "<case>.yaml:".
    monkeypatch.chdir(BAD)
    with pytest.raises(ManifestError) as info:
        load_manifest(Path(f"{case}.yaml"), variables={}, environ=ENVIRON)
    message = str(info.value)
    assert message == (BAD / f"{case}.expected").read_text().rstrip("\n")
    assert SECRET_MARK not in message
    assert SECRET_MARK not in repr(info.value.diagnostics)
    # The ValidationError (whose text shows inputs) must not ride along as the cause.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None or info.value.__suppress_context__
