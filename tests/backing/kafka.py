"""A throw-away Kafka 4.1 broker (KRaft, one combined broker+controller node) from Maven Central.

The jars come from Maven (`kafka_2.13` and its runtime dependencies); the broker runs as
`java -cp '<libs>/*' kafka.Kafka server.properties`. `restart()` keeps the port and the log
dir so tests can stop or crash the broker mid-stream. Set `TUSK_TEST_KAFKA_BOOTSTRAP` to use an
existing broker instead.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import struct
import uuid
from collections.abc import Mapping
from pathlib import Path

from .common import (
    LOOPBACK,
    ManagedProcess,
    ServiceError,
    cache_dir,
    free_port,
    install_lock,
    make_run_dir,
    port_open,
    remove_dir,
    run_logged,
    wait_until,
)

KAFKA_VERSION = "4.1.1"
# kafka_2.13 brings log4j-core but no SLF4J binding; without one the broker logs nothing at all.
LOG4J_VERSION = "2.24.3"

POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>tusk.tests</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""

LOG4J2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN">
      <AppenderRef ref="STDOUT"/>
    </Root>
  </Loggers>
</Configuration>
"""

JVM_OPTS = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-Djava.awt.headless=true"]


def _tool(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"`{name}` is not on PATH; {hint}, or set TUSK_TEST_KAFKA_BOOTSTRAP")
    return path


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return str(Path(java_home) / "bin" / "java")
    return _tool("java", "install a Java 17+ runtime (apt-get install openjdk-17-jre-headless)")


def ensure_installed() -> Path:
    """Return the directory of Kafka's jars, downloading them with Maven if not cached yet."""
    libs = cache_dir() / "kafka-libs"
    marker = libs / ".complete"
    wanted = f"kafka_2.13:{KAFKA_VERSION} log4j-slf4j-impl:{LOG4J_VERSION}\n"

    def cached() -> bool:
        return marker.exists() and marker.read_text() == wanted

    if cached():
        return libs
    with install_lock("kafka"):
        if cached():  # another process downloaded them while we waited
            return libs
        # No marker (or another version): whatever is there may be half-downloaded, start over.
        remove_dir(libs)
        pom = cache_dir() / "kafka-pom" / "pom.xml"
        pom.parent.mkdir(parents=True, exist_ok=True)
        pom.write_text(POM)
        mvn = _tool("mvn", "install Maven (apt-get install maven)")
        run_logged(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                pom,
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={libs}",
            ],
            cache_dir() / "logs" / "kafka-install.log",
            "mvn dependency:copy-dependencies (Kafka jars)",
            cwd=pom.parent,
            timeout=1800,
        )
        if not (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            raise ServiceError(f"Maven finished but {libs} has no kafka_2.13-{KAFKA_VERSION}.jar")
        marker.write_text(wanted)
    return libs


def _cluster_id() -> str:
    """Kafka's cluster id format: a UUID as 22 characters of unpadded URL-safe base64. One that
    starts with '-' would read as an option to StorageTool, so draw again (1 in 64)."""
    while True:
        cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster.startswith("-"):
            return cluster


def _string(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">h", len(data)) + data


def metadata_broker_count(host: str, port: int, timeout: float = 3.0) -> int:
    """Send a raw Metadata v4 request and return how many live brokers the answer lists.

    A broker lists itself only once it is registered with the controller and unfenced, so
    this is the "ready to serve clients" signal. (Kafka 4 dropped Metadata v0-v3.)
    """
    # Request header v1 (api_key=3 Metadata, version 4, correlation id, client id), then the body:
    # topics = null (all), allow_auto_topic_creation = false.
    request = struct.pack(">hhi", 3, 4, 1) + _string("tusk-readiness") + struct.pack(">ib", -1, 0)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(request)) + request)

        def read(n: int) -> bytes:
            buf = b""
            while len(buf) < n:
                chunk = sock.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("Kafka closed the connection")
                buf += chunk
            return buf

        (size,) = struct.unpack(">i", read(4))
        # Response: correlation id, throttle_time_ms, then the brokers array's length.
        _correlation, _throttle, brokers = struct.unpack(">iii", read(size)[:12])
        return int(brokers)


class KafkaBroker:
    """A private single-node KRaft Kafka, or the broker in TUSK_TEST_KAFKA_BOOTSTRAP."""

    def __init__(
        self,
        *,
        num_partitions: int = 3,
        auto_create_topics: bool = False,
        extra_config: Mapping[str, str] | None = None,
    ) -> None:
        """`extra_config` adds or overrides server.properties entries."""
        self.external_bootstrap = os.environ.get("TUSK_TEST_KAFKA_BOOTSTRAP") or None
        self.num_partitions = num_partitions
        self.auto_create_topics = auto_create_topics
        self.extra_config = dict(extra_config or {})
        self.port: int | None = None
        self.controller_port: int | None = None
        self.run_dir: Path | None = None
        self._process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        """`bootstrap_servers` for clients, e.g. `127.0.0.1:9092`."""
        if self.external_bootstrap:
            return self.external_bootstrap
        if self.port is None:
            raise ServiceError("KafkaBroker.bootstrap used before start()")
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> None:
        """Start the broker; the first call also picks ports and formats a fresh log dir."""
        if self.external_bootstrap:
            return
        if self._process is None:
            self._prepare()
        process, port = self._process, self.port
        assert process is not None
        assert port is not None
        process.start()
        try:
            wait_until(
                lambda: self._ready(port),
                120,
                f"Kafka on {LOOPBACK}:{port} to list itself in a metadata response",
                process,
                interval=0.5,
            )
        except BaseException:
            process.kill()
            raise

    def _prepare(self) -> None:
        libs = ensure_installed()
        java = _java()
        self.run_dir = run_dir = make_run_dir("kafka")
        self.port, self.controller_port = free_port(), free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        config = run_dir / "server.properties"
        config.write_text(self._server_properties(run_dir / "logs"))
        log4j = run_dir / "log4j2.xml"
        log4j.write_text(LOG4J2_XML)
        classpath = f"{libs}/*"
        log_opt = f"-Dlog4j2.configurationFile=file:{log4j}"
        run_logged(
            [
                java,
                *JVM_OPTS,
                log_opt,
                "-cp",
                classpath,
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                _cluster_id(),
                "-c",
                config,
            ],
            run_dir / "format.log",
            "Kafka StorageTool format",
            cwd=run_dir,
            timeout=180,
        )
        self._process = ManagedProcess(
            "kafka",
            [java, *JVM_OPTS, log_opt, "-cp", classpath, "kafka.Kafka", config],
            run_dir,
            stop_timeout=30,  # controlled shutdown of a single node takes a few seconds
        )

    def _server_properties(self, log_dir: Path) -> str:
        port, ctrl = self.port, self.controller_port
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOOPBACK}:{ctrl}",
            "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{ctrl}",
            "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(log_dir),
            "num.partitions": str(self.num_partitions),
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            # One node: every internal topic has one replica.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "5",  # 50 by default: slow first group join
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "5",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Consumer groups form at once instead of after 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Kept at Kafka's default (9 s): after kill() the controller refuses the restarted
            # broker until this expires, so kill()+restart() takes ~12 s. Lower it through
            # extra_config if that matters more than tolerance to long pauses on a busy machine.
            "broker.session.timeout.ms": "9000",
            **self.extra_config,
        }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    @staticmethod
    def _ready(port: int) -> bool:
        if not port_open(LOOPBACK, port):
            return False
        try:
            return metadata_broker_count(LOOPBACK, port) > 0
        except (OSError, struct.error):
            return False

    def _own_process(self, action: str) -> ManagedProcess:
        if self.external_bootstrap:
            raise ServiceError(f"cannot {action} the external Kafka at TUSK_TEST_KAFKA_BOOTSTRAP")
        if self._process is None:
            raise ServiceError(f"KafkaBroker.{action}() called before start()")
        return self._process

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM: controlled shutdown); keeps port and data for restart()."""
        if self._process is not None:
            self._process.stop()

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; restart() recovers from the same log dir."""
        self._own_process("kill").kill()

    def restart(self) -> None:
        """Stop (if still running) and start again on the same port with the same data."""
        process = self._own_process("restart")
        process.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker and delete its data (a later start() begins afresh on new ports)."""
        self.stop()
        self._process = None
        if self.run_dir is not None:
            remove_dir(self.run_dir)
            self.run_dir = None

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
