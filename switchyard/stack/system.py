"""Finding the server binaries, installing them with apt-get when we may, or saying how."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from switchyard.stack.processes import StackError

KAFKA_POM = Path(__file__).parent / "kafka" / "pom.xml"


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


OTHERWISE = (
    "or run with STACK=docker or point DATABASE_URL, AMQP_URL and KAFKA_BOOTSTRAP_SERVERS "
    "at running servers"
)


def require(find, package: str, what: str, *, otherwise: str = OTHERWISE):
    """What `find()` finds, installing `package` with apt-get first when we may; else say how."""
    found = find()
    if found:
        return found
    if _can_apt():
        _apt_install(package)
        found = find()
        if found:
            return found
    raise StackError(
        f"{what} is not installed. Install it with: sudo apt-get install -y {package} ({otherwise})"
    )


def filled_once(name: str, fill: Callable[[Path], None]) -> Path:
    """`~/.cache/switchyard/<name>`, made once by `fill(folder)` and then reused.

    `fill` works in a private folder that is renamed into place whole, so a fill cut short is
    never mistaken for a finished one; it raises if it failed.
    """
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "switchyard"
    target = cache / name
    if target.is_dir():
        return target
    partial = cache / f"{name}.part-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        fill(partial)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    try:
        partial.rename(target)
    except OSError:  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def postgres_bin() -> Path:
    """Directory with initdb/postgres/pg_ctl, newest major version first."""

    def find() -> Path | None:
        hits = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major, reverse=True)
        if hits:
            return Path(hits[0]).parent
        initdb = shutil.which("initdb")
        return Path(initdb).parent if initdb else None

    return require(find, "postgresql", "PostgreSQL server (initdb, postgres)")


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

    return require(find, "rabbitmq-server", "RabbitMQ server")


def java() -> Path:
    """A Java 17 or newer runtime (Apache Kafka 4 needs 17)."""

    def find() -> Path | None:
        found = shutil.which("java")
        return Path(found) if found and _java_major(found) >= 17 else None

    return require(find, "openjdk-17-jre-headless", "Java 17 or newer (java)")


def _java_major(java_binary: str) -> int:
    result = subprocess.run([java_binary, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)', result.stderr)
    return int(match.group(1)) if match else 0


def maven() -> Path:
    def find() -> Path | None:
        found = shutil.which("mvn")
        return Path(found) if found else None

    return require(find, "maven", "Maven (mvn), which fetches the Apache Kafka jars")


def kafka_jars(version: str) -> Path:
    """The folder of Apache Kafka's jars (its classpath): fetched by Maven once, then reused."""
    # Named after the pom too, so a changed dependency list is fetched anew.
    pom = hashlib.sha256(KAFKA_POM.read_bytes()).hexdigest()[:8]

    def fetch(folder: Path) -> None:
        java()  # Maven runs on it; say what is missing before Maven does
        print(f"fetching the Apache Kafka {version} jars with Maven (once) ...", flush=True)
        result = subprocess.run(
            [str(maven()), "-q", "-B", "-f", str(KAFKA_POM), "dependency:copy-dependencies",
             f"-Dkafka.version={version}", "-DincludeScope=runtime", f"-DoutputDirectory={folder}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(
                f"Maven could not fetch org.apache.kafka:kafka_2.13:{version}:\n"
                + (result.stdout + result.stderr)[-2000:]
            )

    return filled_once(f"kafka-{version}-{pom}", fetch)
