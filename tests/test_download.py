"""Archive fetching without a network: file:// URLs and a patched urlopen."""
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest

from colorbench_datasets import download as dl
from colorbench_datasets.download import (
    Archive, ChecksumError, DownloadError, ExtractionError, default_data_root, extract, fetch,
)

PAYLOAD = bytes(range(256)) * 9000  # ~2.3 MB: more than one chunk and more than the 1 MiB head


def _archive(tmp_path, data=PAYLOAD, **kw) -> Archive:
    src = tmp_path / "server" / "thing.tgz"
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(data)
    fields = dict(dataset="thing", url=src.as_uri(), filename="thing.tgz", md5=hashlib.md5(data).hexdigest(), size=len(data))
    return Archive(**{**fields, **kw})


def test_fetch_downloads_verifies_and_reuses(tmp_path, monkeypatch):
    archive = _archive(tmp_path)
    got = fetch(archive, tmp_path / "cache", progress=False)
    assert got == tmp_path / "cache" / "thing.tgz" and got.read_bytes() == PAYLOAD
    assert not (tmp_path / "cache" / "thing.tgz.part").exists()
    # Second call: the cached copy is used, the source is not opened again.
    monkeypatch.setattr(dl, "open_stream", lambda *a, **k: pytest.fail("downloaded twice"))
    assert fetch(archive, tmp_path / "cache", progress=False) == got


def test_checksum_failure_deletes_the_download_and_says_so(tmp_path):
    archive = _archive(tmp_path, md5="0" * 32)
    with pytest.raises(ChecksumError, match="failed its check .*md5 .*expected 0{32}.*deleted"):
        fetch(archive, tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").iterdir())


def test_size_mismatch_is_reported_before_hashing(tmp_path):
    archive = _archive(tmp_path, size=len(PAYLOAD) + 1)
    with pytest.raises(ChecksumError, match=f"size {len(PAYLOAD):,} bytes, expected {len(PAYLOAD) + 1:,}"):
        fetch(archive, tmp_path / "cache", progress=False)


def test_fastai_style_check_hashes_only_the_first_mib(tmp_path):
    head = hashlib.md5(PAYLOAD[: 1 << 20]).hexdigest()
    assert fetch(_archive(tmp_path, md5=head, head_only=True), tmp_path / "a", progress=False).is_file()
    with pytest.raises(ChecksumError):  # the whole-file md5 is not the head md5
        fetch(_archive(tmp_path, md5=head), tmp_path / "b", progress=False)


def test_resume_continues_a_partial_download(tmp_path, monkeypatch):
    archive = _archive(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "thing.tgz.part").write_bytes(PAYLOAD[:1_000_000])
    starts = []
    real = dl.open_stream

    def spy(url, start=0, **kw):
        starts.append(start)
        return real(url, start, **kw)

    monkeypatch.setattr(dl, "open_stream", spy)
    assert fetch(archive, cache, progress=False).read_bytes() == PAYLOAD
    assert starts == [1_000_000]


def test_part_longer_than_the_file_restarts(tmp_path):
    archive = _archive(tmp_path)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "thing.tgz.part").write_bytes(b"x" * (len(PAYLOAD) + 10))
    assert fetch(archive, tmp_path / "cache", progress=False).read_bytes() == PAYLOAD


class _Response(io.BytesIO):
    def __init__(self, data, status, headers):
        super().__init__(data)
        self.status, self.headers = status, headers


def test_http_range_206_appends_and_200_starts_over(tmp_path, monkeypatch):
    data = PAYLOAD[:5000]
    archive = Archive("thing", "https://example.invalid/thing.tgz", "thing.tgz", hashlib.md5(data).hexdigest(), len(data))
    monkeypatch.delenv("COLORBENCH_OFFLINE")
    asked = []

    def partial_server(request, timeout):
        rng = request.get_header("Range")
        asked.append(rng)
        first = int(rng.split("=")[1].rstrip("-"))
        return _Response(data[first:], 206, {"Content-Range": f"bytes {first}-{len(data) - 1}/{len(data)}"})

    cache = tmp_path / "a"
    cache.mkdir()
    (cache / "thing.tgz.part").write_bytes(data[:1234])
    monkeypatch.setattr(dl.urllib.request, "urlopen", partial_server)
    assert fetch(archive, cache, progress=False).read_bytes() == data and asked == ["bytes=1234-"]

    def whole_file_server(request, timeout):  # ignores Range
        return _Response(data, 200, {"Content-Length": str(len(data))})

    cache = tmp_path / "b"
    cache.mkdir()
    (cache / "thing.tgz.part").write_bytes(b"garbage!" * 100)
    monkeypatch.setattr(dl.urllib.request, "urlopen", whole_file_server)
    assert fetch(archive, cache, progress=False).read_bytes() == data


def test_network_failure_keeps_the_part_and_explains_the_manual_route(tmp_path, monkeypatch):
    archive = Archive("thing", "https://example.invalid/thing.tgz", "thing.tgz", "0" * 32)
    monkeypatch.delenv("COLORBENCH_OFFLINE")

    def broken(request, timeout):
        raise dl.urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(dl.urllib.request, "urlopen", broken)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "thing.tgz.part").write_bytes(b"12345")
    with pytest.raises(DownloadError) as err:
        fetch(archive, cache, progress=False)
    msg = str(err.value)
    assert archive.url in msg and str(cache / "thing.tgz") in msg and "5 bytes are kept" in msg
    assert (cache / "thing.tgz.part").read_bytes() == b"12345"


def test_offline_error_names_url_and_place_and_a_placed_archive_is_used(tmp_path):
    data = b"hand-carried archive"
    archive = Archive("thing", "https://example.invalid/thing.tgz", "thing.tgz", hashlib.md5(data).hexdigest(), len(data))
    assert os.environ["COLORBENCH_OFFLINE"] == "1"  # set by conftest for every test
    with pytest.raises(DownloadError) as err:
        fetch(archive, tmp_path / "cache", progress=False)
    assert archive.url in str(err.value) and f"put it at {tmp_path / 'cache' / 'thing.tgz'}" in str(err.value)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "thing.tgz").write_bytes(data)
    assert fetch(archive, tmp_path / "cache", progress=False).read_bytes() == data


def test_a_bad_placed_archive_is_reported_not_deleted(tmp_path):
    archive = _archive(tmp_path)
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "thing.tgz").write_bytes(b"not it")
    with pytest.raises(ChecksumError, match="Delete it to download it again"):
        fetch(archive, tmp_path / "cache", progress=False)
    assert (tmp_path / "cache" / "thing.tgz").read_bytes() == b"not it"


def _tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for m in members:
            if isinstance(m, tarfile.TarInfo):
                tar.addfile(m)
            else:
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
    return path


def test_extract_unpacks_once(tmp_path):
    arc = _tar(tmp_path / "a.tgz", [("top/x.txt", b"x"), ("top/sub/y.txt", b"y")])
    dest = extract(arc, tmp_path / "out")
    assert (dest / "top" / "sub" / "y.txt").read_bytes() == b"y"
    (dest / "top" / "x.txt").write_bytes(b"changed")
    extract(arc, tmp_path / "out")  # marker present: not unpacked again
    assert (dest / "top" / "x.txt").read_bytes() == b"changed"
    assert not list(dest.glob(".*.extracting"))


def _link(name, target, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize("member", [
    ("../escape.txt", b"evil"),
    ("top/../../escape.txt", b"evil"),
    ("/tmp/colorbench-absolute.txt", b"evil"),
    _link("top/link", "../../outside"),
    _link("top/abs", "/etc/passwd"),
    _link("top/hard", "../outside", tarfile.LNKTYPE),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out"])
def test_extract_refuses_members_leaving_the_folder(tmp_path, member):
    arc = _tar(tmp_path / "bad.tgz", [("top/ok.txt", b"ok"), member])
    with pytest.raises(ExtractionError, match="refusing to extract"):
        extract(arc, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists() and not Path("/tmp/colorbench-absolute.txt").exists()
    assert not (tmp_path / "out" / "top").exists()  # nothing half-extracted is left in place
    assert not (tmp_path / "out" / ".bad.tgz.extracted").exists()


def test_corrupt_archive_is_an_extraction_error(tmp_path):
    (tmp_path / "c.tgz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ExtractionError, match="could not unpack .*c.tgz"):
        extract(tmp_path / "c.tgz", tmp_path / "out")


def test_data_root_env_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("COLORBENCH_DATA", str(tmp_path / "mine"))
    assert default_data_root() == tmp_path / "mine"
    monkeypatch.delenv("COLORBENCH_DATA")
    monkeypatch.setattr(dl.sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_root() == tmp_path / "xdg" / "colorbench" / "data"
