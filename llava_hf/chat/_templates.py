"""LLaVA's own conversation formats as Jinja chat templates, so LLaVA-style training needs no download.

They reproduce ``llava/conversation.py`` (haotian-liu/LLaVA) as rendered by ``preprocess_plain`` and
``preprocess_v1`` in ``llava/train/train.py``, with two deliberate differences:

* tags stay where they stood in the source (LLaVA moves every ``<image>`` to the front of its turn);
  the joining newline recorded on the media part is rendered back, so a source turn
  ``"<image>\\nWhat is it?"`` renders exactly as LLaVA's ``"<image>\\nWhat is it?"``;
* a leading system turn replaces the default system prompt (LLaVA's preprocessing has no system
  speaker and fails on one).

Each assistant turn sits inside ``{% generation %}`` markers, so TRL's ``assistant_only_loss`` can
use these templates too; :func:`llava_hf.chat.render` does not need the markers.

``vicuna_v1`` (``conv_vicuna_v1``, what LLaVA-1.5's ``--version v1`` fine-tuning uses)::

    <s>{system} USER: {user} ASSISTANT: {assistant}</s>USER: {user} ASSISTANT: {assistant}</s>

``llava_v1`` (``conv_llava_v1``) is the same layout with the "curious human" system prompt.
``plain`` (``conv_llava_plain``, pretraining): ``<s><image>{caption}\\n``; only the first (user)
turn's media tags are kept, its text is dropped, and the caption plus ``\\n`` is what is trained.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LLAVA_V1_SYSTEM", "TEMPLATES", "VICUNA_V1_SYSTEM"]

#: ``conv_vicuna_v1.system`` in LLaVA's conversation.py.
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
#: ``conv_llava_v1.system`` in LLaVA's conversation.py.
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

# Renders one message's content: strings as-is, text parts' text, media parts as their recorded
# source span ("<image>\n", ...) or the bare tag. Written on one line: transformers' Jinja
# environment trims newlines after block tags.
_CONTENT_MACRO = (
    "{%- macro render_content(content) -%}"
    "{%- if content is string -%}{{ content }}"
    "{%- else -%}{%- for part in content -%}"
    "{%- if part['type'] == 'text' -%}{{ part['text'] if part['text'] is not none else '' }}"
    "{%- elif part['type'] in ['image', 'video', 'audio'] -%}"
    "{%- set tag = '<' ~ part['type'] ~ '>' -%}"
    "{%- if part['text'] is defined and part['text'] is string and tag in part['text'] -%}{{ part['text'] }}"
    "{%- else -%}{{ tag }}{%- endif -%}"
    "{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)

_BOS = "{%- if bos_token is defined and bos_token -%}{{ bos_token }}{%- endif -%}"


def _two_separator_template(default_system: str) -> str:
    """SeparatorStyle.TWO: ``system + " "``, then ``ROLE: message`` + ``" "`` (user) / ``"</s>"`` (assistant)."""
    return (
        _CONTENT_MACRO + _BOS + "{%- if messages and messages[0]['role'] == 'system' -%}"
        "{{ render_content(messages[0]['content']) }}{%- set rest = messages[1:] -%}"
        "{%- else -%}{{ '"
        + default_system.replace("'", "\\'")
        + "' }}{%- set rest = messages -%}{%- endif -%}"
        "{{ ' ' }}"
        "{%- for message in rest -%}"
        "{%- if message['role'] == 'user' -%}USER: {{ render_content(message['content']) }}{{ ' ' }}"
        "{%- elif message['role'] == 'assistant' -%}ASSISTANT:"
        "{%- generation -%}{{ ' ' }}{{ render_content(message['content']) }}</s>{%- endgeneration -%}"
        "{%- else -%}{{ raise_exception('LLaVA v1 conversations hold user and assistant turns after an "
        "optional first system turn, not ' ~ message['role']) }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}ASSISTANT:{%- endif -%}"
    )


_PLAIN = (
    _CONTENT_MACRO
    + _BOS
    + "{%- if messages | length > 2 -%}{{ raise_exception('the plain (pretraining) template takes one user "
    "turn (its media) and one assistant turn (the caption), got ' ~ (messages | length) ~ ' turns') }}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}"
    "{%- if message['content'] is string -%}"
    "{%- for tag in ['<image>', '<video>', '<audio>'] -%}{{ tag * (message['content'].count(tag)) }}{%- endfor -%}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] in ['image', 'video', 'audio'] -%}{{ '<' ~ part['type'] ~ '>' }}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{%- generation -%}{{ render_content(message['content']) }}{{ '\\n' }}{%- endgeneration -%}"
    "{%- else -%}{{ raise_exception('the plain (pretraining) template takes user and assistant turns, not ' "
    "~ message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

#: Built-in chat templates by name: pass the name as ``template=`` to :func:`llava_hf.chat.render`
#: or the string as ``chat_template`` to transformers / TRL.
TEMPLATES: Mapping[str, str] = {
    "plain": _PLAIN,
    "vicuna_v1": _two_separator_template(VICUNA_V1_SYSTEM),
    "llava_v1": _two_separator_template(LLAVA_V1_SYSTEM),
}
