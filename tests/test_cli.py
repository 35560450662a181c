"""The command line: help for newcomers, one clear line and exit 2 for mistakes."""

from pathlib import Path

import pytest

from edge.config import EdgeSettings
from edgewire.settings import load_settings
from tests.helpers import run_edgewire


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ([], ["demo", "edge", "cloud", "sim", "tail", "flash", "boards", "ca"]),
        (["demo"], ["--devices", "--http-port"]),
        (
            ["edge"],
            ["--mqtt", "--cloud", "--data-dir", "--http-port", "--edge-id", "EDGEWIRE_MQTT"],
        ),
        (["edge", "dead-letters"], ["--data-dir", "--json", "--replay"]),
        (["edge", "install-service"], ["--print", "--gpio"]),
        (["edge", "add-device"], ["ID", "--json", "--rotate", "--data-dir"]),
        (["edge", "broker-config"], ["--out", "--port", "--tls"]),
        (["ca", "init"], ["--dir"]),
        (["ca", "issue"], ["NAME", "--dir", "--server"]),
        (
            ["flash"],
            ["--port", "--device-id", "--broker", "--dry-run", "--micropython", "--update"],
        ),
        (["boards"], ["--port", "--probe"]),
        (["cloud"], ["--grpc-port", "--http-port", "--db", "--bus"]),
        (["sim"], ["--broker", "--devices", "--rate", "--count", "--prefix", "--runtime"]),
    ],
)
def test_every_command_has_help(command: list[str], expected: list[str]) -> None:
    result = run_edgewire(*command, "--help")
    assert result.returncode == 0, result.stderr
    for word in expected:
        assert word in result.stdout


@pytest.mark.parametrize(
    ("args", "env", "fragments"),
    [
        (["edge", "--no-such-flag"], {}, ["edgewire edge", "--no-such-flag"]),
        (["nonsense"], {}, ["No such command"]),
        (["cloud", "--http-port", "abc"], {}, ["http_port", "'abc'", "--http-port"]),
        (["cloud", "--http-port", "70000"], {}, ["http_port", "70000"]),
        (["edge", "--mqtt", "http://x"], {}, ["mqtt", "scheme"]),
        (["edge", "--edge-id", "Bad Id"], {}, ["edge_id", "Bad Id"]),
        (["edge"], {"EDGEWIRE_HTTP_PORT": "nine"}, ["http_port", "EDGEWIRE_HTTP_PORT"]),
        (["cloud", "--db", "oracle://x"], {}, ["db", "sqlite"]),
        (["sim", "--devices", "0"], {}, ["--devices"]),
        (["sim", "--broker", "tcp://x"], {}, ["--broker"]),
        (["sim", "--prefix", "UPPER"], {}, ["--prefix"]),
    ],
)
def test_bad_flags_and_settings_exit_2_with_one_line(
    args: list[str], env: dict[str, str], fragments: list[str]
) -> None:
    result = run_edgewire(*args, env=env)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_config_files_exit_2(tmp_path: Path) -> None:
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('mqqt = "mqtt://127.0.0.1:1883"\n')
    broken = tmp_path / "broken.toml"
    broken.write_text("mqtt = \n")
    for path, fragment in [(unknown, "unknown setting 'mqqt'"), (broken, "not valid TOML"),
                           (tmp_path / "missing.toml", "No such file")]:  # fmt: skip
        result = run_edgewire("edge", "--config", str(path))
        assert result.returncode == 2, result.stderr
        assert fragment in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_flag_beats_the_environment_which_beats_the_file(tmp_path: Path) -> None:
    config = tmp_path / "edge.toml"
    config.write_text('http_port = 1111\nedge_id = "from-file"\nmqtt = "mqtt://file:1883"\n')
    settings = load_settings(
        EdgeSettings,
        config,
        {"http_port": "3333", "edge_id": None},
        environ={"EDGEWIRE_HTTP_PORT": "2222", "EDGEWIRE_EDGE_ID": "from-env"},
    )
    assert settings.http_port == 3333
    assert settings.edge_id == "from-env"
    assert settings.mqtt_endpoint.host == "file"


def test_dead_letters_needs_an_existing_buffer(tmp_path: Path) -> None:
    result = run_edgewire("edge", "dead-letters", "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert "no edge buffer" in result.stderr
