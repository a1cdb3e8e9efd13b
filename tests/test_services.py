"""The CI rule of tests/conftest.py: a test that needs a real service (PostgreSQL, a browser, a Ray
cluster) skips without it, saying why, except under CI, where that skip fails the run."""

import json
import pathlib
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

SCRATCH_TESTS = '''
import pytest

@pytest.fixture
def postgres_url():
    pytest.skip("no PostgreSQL server here")

def test_uses_the_database_fixture(postgres_url):
    pass

@pytest.mark.service("ray-cluster")
def test_marked_cluster_test():
    pytest.skip("no Ray cluster here")

@pytest.mark.service("browser")
def test_a_service_test_that_runs():
    pass

@pytest.mark.service("postgres")
@pytest.mark.xfail(reason="known bug")
def test_an_expected_failure():
    assert False

def test_a_plain_skip():
    pytest.skip("nothing to do with a service")
'''


@pytest.fixture
def scratch(pytester):
    """A scratch project with this project's conftest and pytest settings (markers included)."""
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n" + "".join(
        f"{key} = {json.dumps(options[key])}\n" for key in ("addopts", "markers")))
    pytester.makepyfile(test_scratch=SCRATCH_TESTS)
    return pytester


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_without_ci_a_missing_service_is_a_skip_with_its_reason(scratch, monkeypatch, ci):
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    result = scratch.runpytest()
    result.assert_outcomes(passed=1, skipped=3, xfailed=1)
    result.stdout.fnmatch_lines(["*SKIPPED*no PostgreSQL server here*",
                                 "*SKIPPED*no Ray cluster here*"])


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_a_skipped_service_test_fails_saying_why(scratch, monkeypatch, ci):
    monkeypatch.setenv("CI", ci)
    result = scratch.runpytest()
    # The fixture's skip is at set-up (an error), the marked test's in its body (a failure); the
    # plain skip and the expected failure stay what they were.
    result.assert_outcomes(passed=1, failed=1, errors=1, skipped=1, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "*CI is set, and this test needs postgres but was skipped: no PostgreSQL server here*",
        "*CI is set, and this test needs ray-cluster but was skipped: no Ray cluster here*",
        "*SKIPPED*nothing to do with a service*",
    ])


def test_an_unknown_service_name_is_a_usage_error(pytester):
    pytester.makeconftest((ROOT / "tests" / "conftest.py").read_text())
    pytester.makepyfile('import pytest\n\n@pytest.mark.service("postgresql")\ndef test_x():\n'
                        '    pass\n')
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*service(postgresql): unknown service; expected one of "
                                 "postgres, browser, ray-cluster*"])
