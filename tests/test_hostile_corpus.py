"""Issue #11: every hostile input of the corpus (:mod:`tests.hostile_corpus`) is refused cleanly.

- the loader (:func:`rfmweb.io.open_volume`, what ``render`` and ``serve`` call) raises one
  :class:`~rfmweb.errors.InputError` naming the file and the reason, and warns of nothing;
- the CLI (in process, for every item) exits 2 with exactly one stderr line naming the file, no
  traceback and no output file; a few items also through a real ``rfmweb render`` process;
- absurd sizes are refused before anything large is allocated (a process with a capped address
  space refuses them the same way).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings

import pytest

from rfmweb.cli import main
from rfmweb.errors import InputError
from rfmweb.io import open_volume

from .hostile_corpus import build, specs

NAMES = [s.name for s in specs()]

#: Items claiming gigabytes of voxels in files of a few bytes.
ABSURD = ("nifti-gz/claims-8gb", "nifti-header/dim-just-under-limit", "nifti-header/ext-huge",
          "nifti-header/vox-offset-huge", "dicom/rows-8000", "itk/nrrd-sizes-under-limit",
          "itk/mha-dimsize-under-limit", "zip/claims-5gib", "zip/overlap-bomb")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {item.name: item for item in build(tmp_path_factory.mktemp("hostile"))}


def test_corpus_is_large_and_varied(corpus):
    kinds = {item.kind for item in corpus.values()}
    assert len(corpus) >= 200 and kinds == {"nifti", "nifti-gz", "nifti-header", "dicom", "zip", "itk", "labels"}


@pytest.mark.parametrize("name", NAMES)
def test_loader_refuses_with_one_clear_error(corpus, name):
    item = corpus[name]
    with warnings.catch_warnings(record=True) as caught, pytest.raises(InputError) as err:
        warnings.simplefilter("always")
        open_volume(item.path, item.labels)
    assert err.value.path == str(item.blamed), err.value
    assert item.reason in err.value.reason, err.value.reason
    assert "\n" not in str(err.value) and len(str(err.value)) < 400 + len(str(item.blamed))
    assert not caught, [str(w.message) for w in caught]


@pytest.mark.parametrize("name", NAMES)
def test_cli_exits_2_with_one_line_and_no_output(corpus, name, tmp_path, capfd, caplog):
    item = corpus[name]
    out = tmp_path / "frame.png"
    args = ["render", str(item.path), "--out", str(out), "--size", "32"]
    args += ["--labels", str(item.labels)] if item.labels else []
    with caplog.at_level(logging.INFO), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code = main(args)
    err = capfd.readouterr().err
    # what the real CLI would print: stderr, plus log records (INFO and up) and warnings
    lines = err.splitlines() + [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"rfmweb: error: {item.blamed}: ") and item.reason in lines[0]
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_real_processes_exit_2(corpus, tmp_path):
    """End to end: one item per loader family through ``rfmweb render`` processes (run side by side)."""
    picks = ["nifti-gz/bad-crc", "dicom/ipp-text", "zip/traversal-7", "itk/mha-compressed-lie", "labels/rotated"]
    procs = []
    for name in picks:
        item = corpus[name]
        out = tmp_path / f"{name.replace('/', '-')}.png"
        args = ["render", str(item.path), "--out", str(out)] + (["--labels", str(item.labels)] if item.labels else [])
        procs.append((item, out, subprocess.Popen([sys.executable, "-m", "rfmweb", *args], stdout=subprocess.PIPE,
                                                  stderr=subprocess.PIPE, text=True)))
    for item, out, proc in procs:
        stdout, stderr = proc.communicate(timeout=300)
        lines = stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, stderr
        assert str(item.blamed) in lines[0] and item.reason in lines[0] and not out.exists()


def test_absurd_sizes_refused_before_allocating(corpus):
    """In a process whose address space is capped at 768 MiB above what its imports use, the items
    claiming gigabytes are refused with the same reasons: nothing tried to allocate what they claim."""
    script = textwrap.dedent("""
        import resource, sys
        from rfmweb.errors import InputError
        from rfmweb.io import open_volume
        with open("/proc/self/status") as f:
            vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + (768 << 20), resource.RLIM_INFINITY))
        for path in sys.argv[1:]:
            try:
                open_volume(path)
                print("ACCEPTED", path)
            except InputError as exc:
                print("REFUSED", exc.reason)
    """)
    items = [corpus[name] for name in ABSURD]
    res = subprocess.run([sys.executable, "-c", script, *(str(i.path) for i in items)], capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == len(items)
    for item, line in zip(items, lines):
        assert line.startswith("REFUSED") and item.reason in line, (item.name, line)
