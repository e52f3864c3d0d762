"""Which shell commands are worth wrapping: test runners, builds, installs, linters, logs.

A command line is wrapped when one of its simple commands matches an include pattern and
none matches an exclude pattern. Patterns are globs where only ``*`` is special (any
characters, spaces included), case-sensitive, matched against a simple command's words
joined by spaces, after environment assignments and neutral prefixes (``time``, ``timeout
60``, ``env``, ``npx``, ``uv run``, ``python -m``…) are removed, and the command name loses
its directory (``./gradlew`` is matched as ``gradlew``). Excludes win: output the agent
needs verbatim (files printed with ``cat``/``head``/``less``, ``git diff``/``git show``) and
commands that never end (``-f``/``--follow``, watchers, dev servers) are never wrapped. A
line whose output is already cut by a final ``| head``, ``| tail``, ``| grep``… is left
alone too.
"""

from __future__ import annotations

from tanglebrain.hooks._config import HooksConfig
from tanglebrain.hooks._shell import Command, Shape, glob

DEFAULT_INCLUDE = (
    # test runners
    "pytest*", "py.test*", "pytest-3*", "tox*", "nox*", "unittest*", "jest*", "vitest run*",
    "mocha*", "playwright test*", "cypress run*", "rspec*", "phpunit*", "ctest*",
    "go test*", "cargo test*", "cargo nextest*", "mix test*", "swift test*", "dotnet test*",
    "npm test*", "npm run test*", "pnpm test*", "pnpm run test*", "yarn test*", "bun test*",
    # builds
    "make*", "gmake*", "cmake*", "ninja*", "meson *", "bazel *", "bazelisk *", "gradle*",
    "gradlew*", "mvn*", "mvnw*", "ant*", "sbt*", "msbuild*", "xcodebuild*", "go build*",
    "go vet*", "go install*", "cargo build*", "cargo check*", "cargo install*", "dotnet build*",
    "dotnet restore*", "swift build*", "mix compile*", "dune build*", "stack build*",
    "cabal build*", "npm run build*", "pnpm build*", "pnpm run build*", "yarn build*",
    "docker build*", "docker buildx build*", "docker compose build*", "docker compose pull*",
    "docker-compose build*", "docker-compose pull*", "docker pull*", "docker push*",
    "podman build*", "buildah *", "terraform init*", "terraform plan*", "terraform validate*",
    # package managers
    "npm install*", "npm i", "npm i *", "npm ci*", "pnpm install*", "pnpm i", "pnpm i *",
    "yarn", "yarn install*", "yarn add*", "bun install*", "pip install*", "pip3 install*",
    "uv sync*", "uv pip install*", "uv add*", "poetry install*", "poetry add*",
    "poetry update*", "pipenv install*", "conda install*", "mamba install*",
    "bundle install*", "gem install*", "composer install*", "composer update*",
    "apt-get install*", "apt-get update*", "apt install*", "apt update*", "brew install*",
    "dnf install*", "yum install*", "apk add*", "go mod download*", "go get*",
    # linters and type checkers
    "tsc*", "eslint*", "ruff*", "mypy*", "pylint*", "flake8*", "pyright*", "basedpyright*",
    "rubocop*", "shellcheck*", "hadolint*", "stylelint*", "golangci-lint*", "cargo clippy*",
    "npm run lint*", "pnpm lint*", "pnpm run lint*", "yarn lint*", "npm run typecheck*",
    "biome check*", "biome lint*", "prettier --check*", "black --check*",
    # log viewers
    "journalctl*", "docker logs*", "docker compose logs*", "docker-compose logs*",
    "kubectl logs*", "kubectl describe*",
)  # fmt: skip
DEFAULT_EXCLUDE = (
    # output the agent reads verbatim
    "cat*", "head*", "less*", "more*", "bat *", "git diff*", "git show*", "git log*",
    "git blame*", "sed -n*", "nl *",
    # commands that never end, or talk to a terminal
    "journalctl* -f*", "docker logs* -f*", "docker compose logs* -f*", "kubectl logs* -f*",
    "docker-compose logs* -f*", "* --follow*", "* --watch*", "tsc* -w*", "* watch*",
    "* dev", "* dev *", "* serve*", "* start", "* start *", "sudo *", "ssh *",
)  # fmt: skip
# Final pipeline stages that already cut or shape the output.
SHAPERS = frozenset({"head", "tail", "grep", "egrep", "rg", "wc", "jq", "less", "more", "sort"})
_PREFIXES = {  # neutral leading words, with how many arguments each takes
    "time": 0, "command": 0, "exec": 0, "nice": 0, "nohup": 0, "env": 0, "npx": 0,
    "bunx": 0, "timeout": 1, "stdbuf": 0,
}  # fmt: skip
_RUNNERS = (("uv", "run"), ("poetry", "run"), ("pnpm", "exec"), ("bundle", "exec"),
            ("pipenv", "run"), ("hatch", "run"), ("pdm", "run"), ("yarn", "exec"))  # fmt: skip


def core(cmd: Command) -> str:
    """The words of ``cmd`` that name what runs: assignments and neutral prefixes removed."""
    words = list(cmd.words)
    changed = True
    while words and changed:
        changed = False
        while words and _assignment(words[0]):
            words.pop(0)
            changed = True
        if words and words[0] in _PREFIXES:
            takes = _PREFIXES[words[0]]
            words = words[1:]
            while words and words[0].startswith("-"):
                words.pop(0)  # the prefix's own options (``timeout -s KILL 60``)
            words = words[takes:]
            changed = True
        elif len(words) >= 3 and ((words[0], words[1]) in _RUNNERS or _python_m(words)):
            words = words[2:]
            changed = True
    if words:
        words[0] = words[0].rsplit("/", 1)[-1]  # ./gradlew, /usr/bin/make
    return " ".join(words)


def _assignment(word: str) -> bool:
    name, eq, _ = word.partition("=")
    return bool(eq) and name.isidentifier() and name.isascii()


def _python_m(words: list[str]) -> bool:
    version = words[0].removeprefix("python")
    return words[0].startswith("python") and not version.strip("0123456789.") and words[1] == "-m"


def family(text: str) -> str:
    """The command family of a core command (``cargo test``, ``pytest``, ``make``) for reports."""
    words = text.split()
    if not words:
        return ""
    multi = {"npm", "pnpm", "yarn", "bun", "cargo", "go", "docker", "docker-compose", "kubectl",
             "dotnet", "uv", "poetry", "pip", "pip3", "apt", "apt-get", "brew", "terraform",
             "mix", "swift", "git", "bundle", "composer", "gem", "conda"}  # fmt: skip
    rest = [w for w in words[1:] if not w.startswith("-")]
    if words[0] in multi and rest:
        script = rest[0] == "run" and len(rest) > 1 and words[0] in ("npm", "pnpm", "yarn")
        return f"{words[0]} {rest[1] if script else rest[0]}"
    return words[0]


def worth_wrapping(shape: Shape, config: HooksConfig) -> str | None:
    """The family of the command to wrap, or None when ``shape`` is not worth wrapping."""
    if not shape.ok or shape.background or not shape.commands:
        return None
    last = core(shape.commands[-1]).split(" ", 1)[0]
    if any(c.piped for c in shape.commands) and last in SHAPERS:
        return None
    include = (*DEFAULT_INCLUDE, *config.include)
    exclude = (*DEFAULT_EXCLUDE, *config.exclude)
    found = None
    for cmd in shape.commands:
        text = core(cmd)
        if any(glob(text, p) for p in exclude):
            return None
        if found is None and any(glob(text, p) for p in include):
            found = family(text)
    return found
