"""Deterministic checks on answers, shared by the live guards and the offline evaluation (one place each).

Pure functions over text: no I/O, no LangChain, no aiogram. Each module's docstring says what it decides and why.

    numbers.invented_numbers(answer, sources) -> list[str]    figures no source states, as written ("25%")
    language.detect_language(text) -> "ru" | "en" | None      translit counts as "ru"; None: too few words
    language.wrong_language(text, expected) -> bool
    repetition.find_loop(text) -> int | None                  where a finished text's looping tail begins
    repetition.LoopDetector().feed(delta) -> int | None       the same, as the answer streams
    repetition.repeated_tool_calls(calls) -> bool             same tool, same arguments, 3 times in a row
    refusal.is_refusal(text) -> bool                          says the information is not available
    text.normalize(text) -> str                               case, whitespace and ё/е folded, for matching
"""
