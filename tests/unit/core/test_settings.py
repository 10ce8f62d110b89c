from __future__ import annotations

from pathlib import Path

import pytest

from gorse_cdc.settings import Settings


def test_env_nested_and_port_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GORSE_CDC_STACK__PORT_OFFSET", "100")
    monkeypatch.setenv("GORSE_CDC_GORSE__API_KEY", "s3cret")
    s = Settings()
    assert s.gorse_url == "http://127.0.0.1:18188"
    assert s.kinesis_endpoint_url == "http://127.0.0.1:14667"
    assert s.aws_client_kwargs("s3")["endpoint_url"] == "http://127.0.0.1:15100"
    assert s.gorse.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(s) and "s3cret" not in str(s.model_dump())


def test_toml_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "gorse-cdc.toml"
    cfg.write_text('[kinesis]\nstream_name = "from-toml"\n[consumer]\ngorse_concurrency = 3\n')
    monkeypatch.setenv("GORSE_CDC_CONFIG", str(cfg))
    monkeypatch.setenv("GORSE_CDC_CONSUMER__GORSE_CONCURRENCY", "5")  # env wins over the file
    s = Settings()
    assert s.kinesis.stream_name == "from-toml"
    assert s.consumer.gorse_concurrency == 5


def test_aws_mode_needs_explicit_gorse_and_source_and_uses_real_endpoints() -> None:
    s = Settings(local=False)
    with pytest.raises(ValueError, match=r"gorse\.url"):
        _ = s.gorse_url
    with pytest.raises(ValueError, match=r"source\.dsn"):
        _ = s.source_dsn
    kw = s.aws_client_kwargs("kinesis")
    assert "endpoint_url" not in kw and "aws_access_key_id" not in kw  # the default AWS chain


def test_localstack_by_endpoint_url() -> None:
    s = Settings(
        aws={"endpoint_url": "http://localhost:4566", "kinesis_endpoint_url": "http://localhost:4566"}
    )
    assert s.aws_client_kwargs("kinesis")["endpoint_url"] == "http://localhost:4566"
    assert s.aws_client_kwargs("dynamodb")["endpoint_url"] == "http://localhost:4566"


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(ValueError):
        Settings(stack={"kinesis_emulator": "bogus"})
