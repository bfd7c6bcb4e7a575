"""scripts/lib/common.sh apt_install: packages installed for the lab start no service, now or at
boot. Debian's tools are stand-ins that record what they are asked and keep a fake package list.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support import PROJECT_ROOT

STUBS = {
    # -W -f=${Status} PKG: one package's state; -W -f=...: every package, "installed NAME".
    "dpkg-query": """
last=""; for arg in "$@"; do last="$arg"; done
case "$last" in
  -f=*) sed 's/^/installed /' "$STATE/installed" ;;
  *) grep -qx "$last" "$STATE/installed" && printf 'install ok installed' ;;
esac
exit 0
""",
    # install: notes whether the policy says "no services" (exit 101), then installs the packages
    # and a dependency of theirs.
    "apt-get": """
echo "apt-get $*" >> "$STATE/calls"
[ "$1" = install ] || exit 0
if [ -x "$POLICY_RC_D" ]; then "$POLICY_RC_D"; echo "policy $?" >> "$STATE/calls"; fi
for arg in "$@"; do case "$arg" in -*|install) ;; *) echo "$arg" >> "$STATE/installed" ;; esac; done
echo libdep >> "$STATE/installed"
""",
    "dpkg": """
[ "$1" = -L ] || exit 1
printf '/usr/share/doc/%s\\n/lib/systemd/system/%s.service\\n/etc/init.d/%s\\n' "$2" "$2" "$2"
""",
    "systemctl": 'echo "systemctl $*" >> "$STATE/calls"',
    "update-rc.d": 'echo "update-rc.d $*" >> "$STATE/calls"',
    "sudo": 'exec "$@"',
}


def apt_install(tmp_path: Path, *args: str, policy_exists: bool = False) -> list[str]:
    """Runs apt_install ARGS against the stand-ins; the calls they recorded."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (state / "installed").write_text("bash\n")
    (state / "calls").touch()
    for name, body in STUBS.items():
        (bin_dir / name).write_text(f"#!/bin/bash\n{body}")
        (bin_dir / name).chmod(0o755)
    policy = tmp_path / "policy-rc.d"
    if policy_exists:
        policy.write_text("#!/bin/sh\nexit 0\n")
        policy.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STATE": str(state),
        "POLICY_RC_D": str(policy),
        "LAB_STATE_DIR": str(tmp_path / "lab-state"),
    }
    command = f"source scripts/lib/common.sh && apt_install {' '.join(args)}"
    subprocess.run(["bash", "-c", command], env=env, cwd=PROJECT_ROOT, check=True, timeout=60)
    return (state / "calls").read_text().splitlines()


def test_an_install_starts_nothing_and_disables_what_it_brought(tmp_path: Path) -> None:
    calls = apt_install(tmp_path, "nginx", "bash")
    install = [call for call in calls if call.startswith("apt-get install")]
    assert len(install) == 1 and install[0].endswith(" nginx")  # bash is there already
    assert "policy 101" in calls  # the install ran under a "no services" policy
    assert not (tmp_path / "policy-rc.d").exists()  # and the policy is gone again
    for package in ("nginx", "libdep"):  # the dependency too
        assert f"systemctl disable --quiet {package}.service" in calls
        assert f"update-rc.d {package} disable" in calls
    assert not [call for call in calls if "bash" in call and "disable" in call]
    # Noted for scripts/uninstall.sh --packages.
    recorded = (tmp_path / "lab-state" / "packages-installed").read_text().split()
    assert sorted(recorded) == ["libdep", "nginx"]


def test_a_policy_already_there_is_left_as_it_was(tmp_path: Path) -> None:
    calls = apt_install(tmp_path, "nginx", policy_exists=True)
    assert "policy 0" in calls
    assert (tmp_path / "policy-rc.d").read_text() == "#!/bin/sh\nexit 0\n"


def test_the_engine_package_may_start_its_service(tmp_path: Path) -> None:
    calls = apt_install(tmp_path, "--services", "docker.io")
    assert any(call.startswith("apt-get install") and "docker.io" in call for call in calls)
    assert not [call for call in calls if call.startswith("policy") or "disable" in call]


def test_nothing_installed_means_nothing_run(tmp_path: Path) -> None:
    assert apt_install(tmp_path, "bash") == []
