"""Deterministic checks on answers, shared by the live guards and the offline evaluation (one place each).

Pure functions over text: no I/O, no LangChain, no aiogram. `numbers` finds invented figures, `language` the
answer's language, `repetition` degenerate loops (finished, streamed, and in tool calls), `refusal` answers that
say the information is not available, `text` the normalisation they share.
"""
