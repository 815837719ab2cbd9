"""What compiling the rule core with mypyc gives the batch replay (issue 12): a probe, not a build.

    python bench/mypyc_probe.py FILE.csv [--rounds 3] [--dir DIR]

1. Copies the repository's tracked files to DIR/src (default: a temporary directory, removed
   afterwards unless --dir is given) and applies there the changes compiling needs, each one an
   incompatibility met on the way (bench/README.md, "Rule replay compiled with mypyc"):
   - `@register` class decorators become `register(Cls)` after the class: mypyc leaves a
     decorated class interpreted, and an interpreted class may not subclass the native `Rule`;
   - the pydantic models (`RuleOptions`, every rule's options) and `plain_options` move to
     modules left pure (rules/options.py, rules/builtin/options.py; re-exported under the old
     names): mypyc does not compile pydantic models (a C error on `pydantic.main`, then
     `Field(...)` defaults checked against the annotation, then `__annotations__` pydantic
     cannot read), and `vars()` of a native object fails;
   - `BusinessCalendar._holidays` typed as a Protocol: typed as `holidays.HolidayBase` (a dict
     subclass), compiled code calls `dict.get` on it directly, skipping `HolidayBase.get`,
     which fills in the year asked: public holidays are silently missed (other incidents).
2. Compiles COMPILED with mypyc (one shared library, -O3). model.py stays pure:
   rules/incident_calls.py keeps weak references to Calls, which a native class cannot have.
3. Runs bench/bench_replay.py on FILE from this checkout (pure) and from the compiled copy,
   interleaved, `--rounds` times (2 replays each), with the load average; the digests must
   agree.

Heavy (the compile is ~50 CPU s): run it with `nice -n 10`.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("engine", "incidents", "incident_calls", "baseline", "attempts", "calendar", "base",
        "sparse", "batch")


def compiled_modules(src: Path) -> list[str]:
    """The files mypyc compiles, as paths under src (through the tollwatch/rules symlink, so
    that they are named tollwatch.rules.*)."""
    builtin = sorted(p.name for p in (src / "rules" / "builtin").glob("*.py")
                     if p.name != "options.py")
    return ([f"tollwatch/rules/{m}.py" for m in CORE]
            + [f"tollwatch/rules/builtin/{name}" for name in builtin])


def tracked_copy(dest: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                            check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src, dst = ROOT / name, dest / name
        if not src.exists() and not src.is_symlink():
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, dst)


def take(text: str, name: str) -> tuple[str, str]:
    """Remove the top-level class or function `name` (with its comments and decorators just
    above it); return the text left and the block."""
    tree = ast.parse(text)
    node = next((n for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))
                 and n.name == name), None)
    if node is None:
        raise SystemExit(f"mypyc_probe: {name} not found: the rules changed, update the probe")
    lines = text.splitlines(keepends=True)
    first = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    assert node.end_lineno is not None
    block = "".join(lines[first:node.end_lineno])
    return "".join(lines[:first] + lines[node.end_lineno:]), block


def imports_of(text: str) -> list[str]:
    """The module's top-level `from ... import ...` statements (but __future__)."""
    tree = ast.parse(text)
    return [ast.get_source_segment(text, n) or "" for n in tree.body
            if isinstance(n, ast.ImportFrom) and n.module != "__future__"]


def unregister(path: Path) -> None:
    text = path.read_text()
    names = re.findall(r"^@register\nclass (\w+)\(", text, re.M)
    if names:
        text = text.replace("@register\nclass ", "class ")
        path.write_text(text.rstrip("\n") + "\n\n" + "".join(f"\nregister({n})\n" for n in names))


def options_apart(src: Path) -> None:
    """The pydantic models and plain_options into modules mypyc leaves alone."""
    base = src / "rules" / "base.py"
    text = base.read_text()
    blocks = []
    for name in ("RuleOptions", "PlainOptions", "plain_options"):
        text, block = take(text, name)
        blocks.append(block)
    text = text.replace(
        "\nfrom tollwatch.rules.calendar import",
        "\nfrom tollwatch.rules.options import PlainOptions as PlainOptions\n"
        "from tollwatch.rules.options import RuleOptions as RuleOptions\n"
        "from tollwatch.rules.options import plain_options as plain_options\n"
        "from tollwatch.rules.calendar import", 1)
    base.write_text(text)
    (src / "rules" / "options.py").write_text(
        '"""Rule options: pydantic models, left pure (bench/mypyc_probe.py)."""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import Any, Literal, TypeVar, cast\n\n"
        "from pydantic import BaseModel, ConfigDict, Field\n\n"
        + "\n\n".join(blocks[:1]) + '\n\nOptionsT = TypeVar("OptionsT", bound=RuleOptions)\n\n'
        + "\n\n".join(blocks[1:]))
    imports: list[str] = []
    models: list[str] = []
    for path in sorted((src / "rules" / "builtin").glob("*.py")):
        text = path.read_text()
        found = re.findall(r"^class (\w+Options)\(RuleOptions\):", text, re.M)
        if not found:
            continue
        imports += [i for i in imports_of(text) if i not in imports]
        for name in found:
            text, block = take(text, name)
            models.append(block)
            text = text.replace(
                "\nfrom tollwatch.rules.base import",
                f"\nfrom tollwatch.rules.builtin.options import {name} as {name}\n"
                "from tollwatch.rules.base import", 1)
        path.write_text(text)
    (src / "rules" / "builtin" / "options.py").write_text(
        '"""The shipped rules\' options: pydantic models, left pure (bench/mypyc_probe.py)."""\n\n'
        "from __future__ import annotations\n\n" + "\n".join(imports) + "\n\n\n"
        + "\n\n".join(models))


def holidays_protocol(src: Path) -> None:
    path = src / "rules" / "calendar.py"
    text = path.read_text()
    old = "self._holidays: holidays.HolidayBase | None = None"
    if old not in text:
        raise SystemExit("mypyc_probe: calendar.py changed, update the probe")
    text = text.replace(old, "self._holidays: _Holidays | None = None")
    text = text.replace("\n_DAYS = (", '''
class _Holidays(Protocol):
    """holidays.HolidayBase as used here (not typed as the dict subclass it is: compiled code
    would call dict.get, not its own get)."""

    def get(self, key: date, default: None = None) -> str | None: ...


_DAYS = (''', 1)
    path.write_text(text.replace("from zoneinfo import ZoneInfo",
                                 "from typing import Protocol\nfrom zoneinfo import ZoneInfo", 1))


def compile_copy(src: Path) -> float:
    """mypyc on the copy; returns the CPU seconds it took (mypyc and the C compiler)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "mypyc", *compiled_modules(src)], cwd=src,
                          capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit("mypyc_probe: the compile failed")
    built = sorted(p.name for p in (src / "rules").rglob("*.so"))
    print(f"compiled {len(built)} modules", flush=True)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def bench(tree: Path, data: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, "bench/bench_replay.py", str(data), "--repeat", "2"],
                          cwd=tree, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stdout[-3000:] + proc.stderr[-3000:])
    return [line.strip() for line in proc.stdout.splitlines() if "replay" in line]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("file", type=Path, help="a CDR file, as bench_replay.py takes it")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--dir", type=Path, help="keep the compiled copy here (DIR/src)")
    a = p.parse_args(argv)
    work = a.dir or Path(tempfile.mkdtemp(prefix="mypyc-probe-"))
    src = work / "src"
    if src.exists():
        shutil.rmtree(src)
    try:
        tracked_copy(src)
        for path in (src / "rules" / "builtin").glob("*.py"):
            unregister(path)
        options_apart(src)
        holidays_protocol(src)
        cpu = compile_copy(src)
        print(f"compile: {cpu:.1f} CPU s", flush=True)
        bench(ROOT, a.file.resolve())  # writes the relevant-calls cache once, not timed
        for i in range(a.rounds):
            for name, tree in (("pure", ROOT), ("compiled", src)):
                load = os.getloadavg()[0]
                stamp = time.strftime("%H:%M:%S", time.gmtime())
                for line in bench(tree, a.file.resolve()):
                    print(f"{stamp} round {i + 1} {name:8} load {load:5.2f}  {line}", flush=True)
    finally:
        if a.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
