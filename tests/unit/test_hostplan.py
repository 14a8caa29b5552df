"""What scripts/bootstrap decides, from the facts it reads: os-release, binfmt_misc entries,
tools and versions — as a stock Debian 12, GitHub's ubuntu-24.04 image and others have them.

The facts of GitHub's runner image come from actions/runner-images
(images/ubuntu/Ubuntu2404-Readme.md: Docker 28.0.4 from docker-ce, Docker-Buildx 0.20.1+,
Skopeo 1.13.3, Node.js 20/22, no qemu, no cosign, no oras) and from tonistiigi/binfmt
(cmd/binfmt/config.go: what docker/setup-qemu-action registers: ``qemu-aarch64``,
interpreter /usr/bin/qemu-aarch64, flags POCF)."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dcforge.core import hostplan
from dcforge.core.hostplan import HostFacts

DEBIAN_12 = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
"""
UBUNTU_2404 = """PRETTY_NAME="Ubuntu 24.04.2 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.2 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
UBUNTU_CODENAME=noble
"""
MINT = 'NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n'
FEDORA = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\n'
AARCH64_MAGIC = "7f454c460201010000000000000000000200b700"
AARCH64_MASK = "ffffffffffffff00fffffffffffffffffeffffff"
# What docker/setup-qemu-action (tonistiigi/binfmt --install arm64) leaves.
SETUP_QEMU = (
    "enabled\ninterpreter /usr/bin/qemu-aarch64\nflags: POCF\noffset 0\n"
    f"magic {AARCH64_MAGIC}\nmask {AARCH64_MASK}\n"
)
# What Debian's qemu-user-static registers (scripts/bootstrap adds C and F).
DEBIAN_QEMU = (
    "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POCF\noffset 0\n"
    f"magic {AARCH64_MAGIC}\nmask {AARCH64_MASK}\n"
)
RUNNER_TOOLS = {
    "docker": "",
    "dockerd": "",
    "buildx": "v0.20.1",
    "skopeo": "",
    "curl": "",
    "node": "v20.18.2",
    "npm": "",
    "cosign": "",  # sigstore/cosign-installer, $HOME/.cosign
    "oras": "",  # oras-project/setup-oras, $RUNNER_TEMP/<uuid>
}


def facts(**changes: object) -> HostFacts:
    base = HostFacts(
        os_release=hostplan.parse_os_release(DEBIAN_12),
        machine="x86_64",
        root=True,
        github_actions=False,
        apt=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


TRIXIE = frozenset({"docker.io", "docker-cli", "docker-buildx", "cosign", "oras",
                    "docker-registry", "nodejs", "npm"})  # fmt: skip


def test_os_release_is_read_as_the_shell_would() -> None:
    found = hostplan.parse_os_release(UBUNTU_2404 + "# comment\nEMPTY=\nQ='single'\n")
    assert found["ID"] == "ubuntu" and found["VERSION_ID"] == "24.04"
    assert found["EMPTY"] == "" and found["Q"] == "single"


@pytest.mark.parametrize(
    ("text", "family"),
    [(DEBIAN_12, "debian"), (UBUNTU_2404, "ubuntu"), (MINT, "ubuntu"), (FEDORA, ""), ("", "")],
)
def test_the_family_comes_from_id_then_id_like(text: str, family: str) -> None:
    assert hostplan.family(hostplan.parse_os_release(text)) == family


def test_a_stock_debian_12_installs_everything_it_lacks_named_for_debian() -> None:
    """The five a fresh machine lacked: the docker CLI, curl, arch-test (and the rest)."""
    made = hostplan.plan(facts(tools={}), TRIXIE)
    assert made.family == "debian" and not made.manual
    assert {"docker.io", "docker-cli", "docker-buildx", "cosign", "oras", "docker-registry"} <= set(
        made.install_trixie
    )
    assert {"curl", "arch-test", "mmdebstrap", "debootstrap", "busybox-static", "skopeo",
            "qemu-user-static", "iptables"} <= set(made.install)  # fmt: skip
    assert made.arm64 == "register"  # once qemu-user-static is in


def test_debian_13_takes_the_trixie_pins_and_the_rest_from_its_suites() -> None:
    """Also a Debian 12 that an older bootstrap turned into a "13" (trixie's base-files) with
    bookworm's suites: only the exact versions keep apt off bookworm's docker.io 20.10."""
    trixie = hostplan.parse_os_release(DEBIAN_12.replace("bookworm", "trixie").replace("12", "13"))
    made = hostplan.plan(facts(os_release=trixie), TRIXIE)
    assert {"docker.io", "docker-cli", "cosign", "oras"} <= set(made.install_trixie)
    assert {"arch-test", "skopeo", "curl"} <= set(made.install)
    assert not hostplan.bookworm(trixie)  # no trixie source added, no bookworm pins


@pytest.mark.parametrize("codename", ["bullseye", "forky", ""])
def test_other_debian_releases_take_everything_from_their_own_suites(codename: str) -> None:
    release = hostplan.parse_os_release(DEBIAN_12.replace("bookworm", codename))
    made = hostplan.plan(facts(os_release=release), TRIXIE)
    assert made.family == "debian" and made.install_trixie == ()
    assert {"docker.io", "docker-cli", "cosign", "oras"} <= set(made.install)


def test_not_root_on_debian_12_is_told_to_run_bootstrap_for_what_comes_from_trixie() -> None:
    made = hostplan.plan(facts(root=False), TRIXIE)
    assert "cosign: run scripts/bootstrap as root (it installs cosign from trixie)" in made.manual
    assert "skopeo: apt-get install skopeo (as root)" in made.manual


def test_a_machine_with_a_docker_client_still_gets_the_engine() -> None:
    made = hostplan.plan(facts(tools={"docker": ""}), TRIXIE)
    assert "docker.io" in made.install_trixie and "docker-cli" not in made.install_trixie


def test_a_running_engine_and_new_enough_buildx_are_used_as_they_are() -> None:
    made = hostplan.plan(facts(tools={**RUNNER_TOOLS, "dockerd": ""}, engine_up=True), TRIXIE)
    assert not {"docker.io", "docker-cli", "docker-buildx"} & set(made.install_trixie)
    up_no_daemon_binary = {k: v for k, v in RUNNER_TOOLS.items() if k != "dockerd"}
    made = hostplan.plan(facts(tools=up_no_daemon_binary, engine_up=True), TRIXIE)
    assert "docker.io" not in made.install_trixie  # an engine that answers is an engine


def test_a_buildx_too_old_is_asked_for() -> None:
    made = hostplan.plan(facts(tools={**RUNNER_TOOLS, "buildx": "v0.10.4"}, engine_up=True))
    assert "docker-buildx" in made.install


def test_githubs_ubuntu_2404_runner_installs_nothing_and_has_emulation() -> None:
    """The runner image after the workflow's setup actions: nothing to install, arm64 by
    setup-qemu-action's handler (its name and interpreter are not Debian's)."""
    runner = facts(
        os_release=hostplan.parse_os_release(UBUNTU_2404),
        github_actions=True,
        binfmt={"qemu-aarch64": SETUP_QEMU},
        tools=RUNNER_TOOLS,
        engine_up=True,
        local_registry=False,
    )
    made = hostplan.plan(runner, TRIXIE)
    assert made == hostplan.HostPlan("ubuntu", (), (), (), (), "ok")


def test_under_actions_a_missing_tool_names_the_action_that_brings_it() -> None:
    tools = {k: v for k, v in RUNNER_TOOLS.items() if k not in ("cosign", "oras")}
    runner = facts(
        os_release=hostplan.parse_os_release(UBUNTU_2404), github_actions=True, tools=tools,
        engine_up=True, local_registry=False,
    )  # fmt: skip
    made = hostplan.plan(runner, TRIXIE)
    assert not made.install and not made.install_trixie
    assert made.manual == (
        "cosign: add sigstore/cosign-installer to the workflow",
        "oras: add oras-project/setup-oras to the workflow",
    )
    # A job without setup-qemu-action (gate, publish) needs no emulation: a warning only.
    assert made.arm64 == "missing"


def test_ubuntu_installs_from_its_own_archive_and_names_what_it_lacks() -> None:
    made = hostplan.plan(facts(os_release=hostplan.parse_os_release(UBUNTU_2404)), TRIXIE)
    assert made.family == "ubuntu" and not made.install_trixie
    assert {"docker.io", "docker-buildx", "skopeo", "arch-test", "qemu-user-static"} <= set(
        made.install
    )
    assert "docker-cli" not in made.install  # Ubuntu's docker.io carries the client
    assert made.download == ("cosign", "oras")  # release binaries, by pinned sha256
    assert made.manual == ()  # Node.js: the CLI's own, fetched with it (hostsetup)


def test_anything_else_gets_one_list_and_no_install() -> None:
    made = hostplan.plan(facts(os_release=hostplan.parse_os_release(FEDORA)), TRIXIE)
    assert made.family == "" and not made.install and not made.install_trixie
    assert any(line.startswith("cosign: install cosign (https://") for line in made.manual)
    assert any(line.startswith("arch-test:") for line in made.manual)


def test_not_root_installs_nothing_but_names_the_packages() -> None:
    made = hostplan.plan(facts(root=False), TRIXIE)
    assert not made.install and "arch-test: apt-get install arch-test (as root)" in made.manual


@pytest.mark.parametrize("entry", [SETUP_QEMU, DEBIAN_QEMU])
def test_any_enabled_aarch64_handler_with_the_f_flag_is_emulation(entry: str) -> None:
    assert hostplan.arm64_handler({"whatever-name": entry}) == "whatever-name"
    made = hostplan.plan(facts(binfmt={"x": entry}), TRIXIE)
    assert made.arm64 == "ok" and "qemu-user-static" not in made.install


@pytest.mark.parametrize(
    "entry",
    [
        SETUP_QEMU.replace("enabled", "disabled"),
        SETUP_QEMU.replace("flags: POCF", "flags: OC"),  # no F: not seen in containers
        SETUP_QEMU.replace("b700", "3e00"),  # x86-64
        SETUP_QEMU.replace("7f454c460201", "7f454c460101"),  # 32-bit
        SETUP_QEMU.replace("offset 0", "offset 4"),
    ],
)
def test_other_handlers_are_not_arm64_emulation(entry: str) -> None:
    assert hostplan.arm64_handler({"qemu-aarch64": entry}) is None


def test_an_aarch64_machine_needs_no_emulation_or_arch_test() -> None:
    made = hostplan.plan(facts(machine="aarch64"), TRIXIE)
    assert made.arm64 == "native"
    assert "qemu-user-static" not in made.install and "arch-test" not in made.install


def test_a_remote_registry_needs_no_local_registry_tools() -> None:
    made = hostplan.plan(facts(local_registry=False), TRIXIE)
    every = set(made.install) | set(made.install_trixie)
    assert not {"docker-registry", "debootstrap", "mmdebstrap", "busybox-static"} & every


@pytest.mark.parametrize(("node", "ok"), [("v18.19.1", False), ("v20.0.0", True), ("", False)])
def test_node_20_or_newer(node: str, ok: bool) -> None:
    tools = {"node": node, "npm": ""} if node else {"npm": ""}
    assert hostplan.node_ok(tools) is ok


@given(st.text())
def test_any_binfmt_text_is_read_without_error(text: str) -> None:
    hostplan.arm64_handler({"x": text})


@given(st.text())
def test_any_os_release_text_is_read_without_error(text: str) -> None:
    hostplan.family(hostplan.parse_os_release(text))


@pytest.mark.parametrize(
    ("output", "version"),
    [
        ("github.com/docker/buildx 0.13.1+ds1 0.13.1+ds1-3", "0.13.1+ds1"),  # Debian's
        ("github.com/docker/buildx v0.20.1 de5cc64", "v0.20.1"),  # the runner image's
        ("buildah 1.33.7", None),  # podman-docker's shim
        ("", None),
    ],
)
def test_only_dockers_buildx_counts_as_buildx(output: str, version: str | None) -> None:
    assert hostplan.buildx_version(output) == version
