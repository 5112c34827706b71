"""pytest plugin: put lbsim (a local load balancer that fails like a cloud's) in front of
the app under test. Loaded automatically where the `lbsim` package is installed
(`pytest11` entry point); `pytest -p no:lbsim` turns it off.

Fixtures:

* `lbsim`: one lbsim for the test, in front of `lbsim_upstream` (None: lbsim's embedded
  mock app) with `lbsim_settings`, both fixtures a conftest.py or test module can
  override, and `@pytest.mark.lbsim(**settings)` on top. Yields an `lbsim.Lbsim`: `.url`,
  `.addr`, `.admin_url`, `.stats()`, `.stderr()`, ...
* `lbsim_factory`: `start(**settings) -> Lbsim`, for several at once or settings known
  only inside the test (the app's port); each is stopped when the test ends.

Settings (keyword arguments; see `lbsim.lbsim_argv`): `cloud`, `upstream`, `time_scale`,
`idle_timeout`, `backend_timeout`, `race_window`, `health_checks`, `extra_args`,
`ready_timeout`.

Options: `--lbsim-cloud CLOUD` is the default cloud of every lbsim the suite starts (so
the same suite runs behind aws, gcp, gcp-classic or ingress-nginx; a test that passes
`cloud=` itself keeps it); `--lbsim-bin PATH` runs that binary instead of the one the
wheel installed.
"""

import pytest

from lbsim._process import Lbsim, LbsimStartError, find_binary

DEFAULT_CLOUD = "aws"


def pytest_addoption(parser):
    group = parser.getgroup("lbsim", "lbsim: a local load balancer that fails like a cloud's")
    group.addoption(
        "--lbsim-cloud",
        default=DEFAULT_CLOUD,
        metavar="CLOUD",
        help="cloud of every lbsim the fixtures start unless a test names one: "
        "aws, gcp, gcp-classic, ingress-nginx (lbsim --help lists them). Default: aws",
    )
    group.addoption(
        "--lbsim-bin",
        default=None,
        metavar="PATH",
        help="the lbsim binary to run. Default: the one `pip install` put next to this "
        "Python, else the first lbsim on PATH",
    )


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "lbsim(**settings): settings of the `lbsim` fixture for this test "
        "(cloud, time_scale, idle_timeout, backend_timeout, race_window, health_checks, "
        "extra_args), over the lbsim_settings fixture",
    )


def pytest_report_header(config):
    cloud = config.getoption("--lbsim-cloud")
    try:
        binary = find_binary(config.getoption("--lbsim-bin"))
    except LbsimStartError as e:
        return f"lbsim: {e}"
    return f"lbsim: {binary} (default cloud: {cloud})"


@pytest.fixture(scope="session")
def lbsim_bin(pytestconfig):
    """The lbsim binary the fixtures run (--lbsim-bin, else the installed one)."""
    try:
        return find_binary(pytestconfig.getoption("--lbsim-bin"))
    except LbsimStartError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def lbsim_cloud(pytestconfig):
    """The cloud lbsim plays unless a test names one (--lbsim-cloud, default aws)."""
    return pytestconfig.getoption("--lbsim-cloud")


@pytest.fixture
def lbsim_upstream():
    """The app the `lbsim` fixture fronts: "HOST:PORT", (host, port) or a list of them.
    None (this default) starts lbsim's embedded mock app. Override it to return your
    app's address (it may depend on the fixture that starts the app)."""
    return None


@pytest.fixture
def lbsim_settings():
    """Settings of the `lbsim` fixture (a dict of `lbsim_factory` keyword arguments);
    override it in a conftest.py or test module. `@pytest.mark.lbsim(...)` adds to it."""
    return {}


@pytest.fixture
def lbsim_factory(lbsim_bin, lbsim_cloud):
    """start(**settings) -> Lbsim: starts an lbsim and waits until it is ready; every
    one started is stopped (SIGTERM, wait) when the test ends. A failure to start fails
    the test with lbsim's own words (its stderr)."""
    started = []

    def start(**settings):
        settings.setdefault("cloud", lbsim_cloud)
        try:
            lb = Lbsim.start(lbsim_bin, **settings)
        except LbsimStartError as e:
            pytest.fail(str(e), pytrace=False)
        started.append(lb)
        return lb

    yield start
    problems = []
    for lb in reversed(started):
        try:
            lb.stop()
        except RuntimeError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def lbsim(request, lbsim_factory, lbsim_upstream, lbsim_settings):
    """One lbsim in front of `lbsim_upstream` with `lbsim_settings` and the test's
    `@pytest.mark.lbsim(...)` settings; stopped after the test."""
    settings = {"upstream": lbsim_upstream, **lbsim_settings}
    for marker in reversed(list(request.node.iter_markers("lbsim"))):
        if marker.args:
            raise TypeError("@pytest.mark.lbsim takes keyword arguments only")
        settings.update(marker.kwargs)
    return lbsim_factory(**settings)
