"""tanglebrain inside coding agents: hooks that shrink tool output before it enters a context.

A coding agent (Claude Code, Codex CLI, Gemini CLI) runs ``tanglebrain hook AGENT EVENT``
on its tool calls. Before a shell call whose output is worth compressing (test runners,
builds, package managers, linters, log viewers) the handler rewrites the command to
``tanglebrain wrap -- 'CMD'``, but only where that cannot widen the user's permissions.
``wrap`` runs the command in the user's shell, prints small outputs byte for byte and
bulky ones as the faithful digest of :mod:`tanglebrain.compress`, keeps the raw output
(``tanglebrain raw ID``) and exits with the command's status. Every invocation is logged
in the ledger's hook log, which ``tanglebrain gain`` sums up honestly.

This package runs on every tool call of an agent, so nothing here imports typer, rich,
pydantic or litellm; :mod:`tanglebrain.compress` is imported only for a bulky output.

Modules: ``_config`` (the roster's ``[hooks]`` table, the state directory),
``_shell`` (a shell command's shape), ``_classify`` (which commands are wrapped),
``_perms`` (permission rules, and Claude Code's), ``_common`` (the rewrite all agents
share), ``_claude``, ``_codex``, ``_gemini`` (each agent's handlers and rules), ``_wrap`` (the
runner), ``_log`` (the hook log), ``_settings`` (install, uninstall, status), ``_gain``
(the savings report), ``_entry`` (the command lines that skip typer).
"""
