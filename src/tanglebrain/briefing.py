"""What the orchestrator is told: its system prompt, and what it sees of attachments.

The system prompt is the packaged template (or the roster's ``system_prompt_file``)
with ``$menu`` replaced by the backends it may delegate to. An attachment reaches the
orchestrator as its size and a budgeted digest, never its full text: delegates that
are handed it get that.
"""

from __future__ import annotations

import string
from importlib import resources
from pathlib import Path

from tanglebrain.errors import ConfigError, not_utf8
from tanglebrain.runtime import Attachment, RunContext
from tanglebrain.tools import menu
from tanglebrain.trace import Digest


def system_prompt(ctx: RunContext, orchestrator_id: str, base_dir: Path | None) -> str:
    """The orchestrator's system prompt: the package template or the user's file.

    ``$menu`` becomes the specialists' menu and ``$attach_rule`` the rule about this
    run's attachments (empty without any).
    """
    custom = ctx.roster.settings.system_prompt_file
    if custom:
        path = Path(custom).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        field = "settings.system_prompt_file"
        try:
            template = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"cannot read system prompt file: {not_utf8(exc)}", field=field,
                              fix=f"save {path} as UTF-8 text") from None  # fmt: skip
        except OSError as exc:
            raise ConfigError(f"cannot read system prompt file: {exc.strerror}", field=field,
                              fix=f"check the path {path}") from None  # fmt: skip
    else:
        template = resources.files("tanglebrain").joinpath("prompts/orchestrator.md").read_text()
    return string.Template(template).safe_substitute(
        menu=menu(ctx, orchestrator_id), attach_rule=_attach_rule(ctx)
    )


def _attach_rule(ctx: RunContext) -> str:
    """The rule about attachments, naming this run's; nothing when it has none.

    A model told about ``attach`` in a run without attachments names one anyway (small
    models copy the example): the rule appears only where it can be followed.
    """
    if not ctx.attachments:
        return ""
    names = ", ".join(f'"{name}"' for name in sorted(ctx.attachments))
    return (
        f"\n- Attach bulky inputs by name (`attach: [{names}]`) instead of copying them "
        "into prompts."
    )


def attachment_view(att: Attachment, digest: str) -> str:
    """What the orchestrator sees of an attachment: its size and a digest, not the text."""
    return (
        f"- {att.name}: {att.size} bytes, {att.lines} lines. Hand it to a delegate with "
        f'attach: ["{att.name}"]. Digest:\n<<<digest {att.name}>>>\n{digest.rstrip()}\n'
        f"<<<end digest {att.name}>>>"
    )


async def attachment_views(ctx: RunContext, orchestrator_id: str | None) -> str:
    """Every attachment's view (size and digest), recording the digests in the trace."""
    from tanglebrain import compress, llm_digest  # only runs with attachments need them

    budget = ctx.roster.settings.context_budget_bytes
    views = []
    for att in ctx.attachments.values():
        if ctx.roster.settings.llm_digest:
            digest = await llm_digest.digest(ctx, att, orchestrator_id)
        else:
            digest = compress.budgeted(att.text, budget)
        view = attachment_view(att, digest)
        ctx.run.digests.append(Digest(att.name, att.size, len(view.encode())))
        views.append(view)
    return "\n".join(views)


def user_message(prompt: str, views: str) -> str:
    """The first user message: the prompt, then the attachments' views (if any)."""
    if not views:
        return prompt
    return (
        f"{prompt}\n\nAttachments (their full text is not in your context; delegates get it "
        "when you attach them):\n" + views
    )
