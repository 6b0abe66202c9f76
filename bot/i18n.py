"""The bot's own texts in English and Russian, chosen by the user's Telegram language."""

from __future__ import annotations

TEXTS: dict[str, dict[str, str]] = {
    "start": {
        "en": "Hi! I'm adaptbot. Ask me anything.\nCurrent mode: {mode}. Change it with /mode; /help lists the commands.",
        "ru": "Привет! Я adaptbot. Спрашивайте что угодно.\nТекущий режим: {mode}. Сменить: /mode; список команд: /help.",
    },
    "help": {
        "en": "adaptbot answers on four levels of LLM adaptation.\n\n{commands}\n\nCurrent mode: {mode}.{extra}",
        "ru": "adaptbot отвечает на четырёх уровнях адаптации LLM.\n\n{commands}\n\nТекущий режим: {mode}.{extra}",
    },
    "help_admin": {
        "en": "\n\nAdmin:\n{commands}\nSend a file in a private chat to add it to the knowledge base.",
        "ru": "\n\nАдмин:\n{commands}\nПришлите файл в личном чате, чтобы добавить его в базу знаний.",
    },
    "help_search_off": {
        "en": "\nWeb search is off: set SEARCH_PROVIDER (searxng, tavily, serpapi or brave) with SEARCH_URL or SEARCH_API_KEY to enable it.",
        "ru": "\nВеб-поиск выключен: задайте SEARCH_PROVIDER (searxng, tavily, serpapi или brave) и SEARCH_URL или SEARCH_API_KEY.",
    },
    "mode_menu": {"en": "Current mode: {mode}\nChoose a level and a model:", "ru": "Текущий режим: {mode}\nВыберите уровень и модель:"},
    "mode_set": {"en": "Mode: {mode}", "ru": "Режим: {mode}"},
    "mode_unavailable": {"en": "unavailable: {reason}", "ru": "недоступна: {reason}"},
    "mode_gain": {"en": "{gain} on {cases} cases", "ru": "{gain} на примерах: {cases}"},
    "mode_unknown": {
        "en": "Unknown name “{name}”. Levels: {levels}. Models: {models}.",
        "ru": "Неизвестное имя «{name}». Уровни: {levels}. Модели: {models}.",
    },
    "reset_done": {"en": "Memory of this chat cleared ({n} messages).", "ru": "Память этого чата очищена (сообщений: {n})."},
    "steps_usage": {"en": "Usage: /steps on or /steps off (now: {state}).", "ru": "Использование: /steps on или /steps off (сейчас: {state})."},
    "steps_set": {"en": "Agent steps: {state}.", "ru": "Шаги агента: {state}."},
    "stopped": {"en": "⏹ Stopped.", "ru": "⏹ Остановлено."},
    "nothing_to_stop": {"en": "Nothing to stop.", "ru": "Нечего останавливать."},
    "not_allowed": {
        "en": "Sorry, this bot is private. Ask its owner to add your id ({user_id}).",
        "ru": "Извините, это закрытый бот. Попросите владельца добавить ваш id ({user_id}).",
    },
    "admin_only": {"en": "Sorry, this command is for the bot's admins only.",
                   "ru": "Извините, эта команда только для администраторов бота."},
    "group_admin_only": {
        "en": "Sorry, in a group only its administrators (or the bot's admins) may use /{command}: it changes the chat for everyone.",
        "ru": "Извините, в группе /{command} могут использовать только её администраторы (или администраторы бота): команда меняет чат для всех.",
    },
    "stop_not_yours": {
        "en": "Sorry, only the person who asked, or a group administrator, may stop this answer.",
        "ru": "Извините, остановить этот ответ может только тот, кто задал вопрос, или администратор группы.",
    },
    "admin_check_failed": {
        "en": "I could not check with Telegram whether you administer this group. Please try again in a moment.",
        "ru": "Не удалось узнать у Telegram, администратор ли вы в этой группе. Попробуйте ещё раз чуть позже.",
    },
    "prompt_show": {"en": "System prompt ({origin}):\n\n{text}", "ru": "Системный промпт ({origin}):\n\n{text}"},
    "prompt_default": {"en": "default", "ru": "по умолчанию"},
    "prompt_custom": {"en": "set by an admin", "ru": "задан администратором"},
    "prompt_set": {"en": "System prompt replaced.", "ru": "Системный промпт заменён."},
    "prompt_reset": {"en": "System prompt reset to the default.", "ru": "Системный промпт сброшен на стандартный."},
    "prompt_usage": {"en": "Usage: /prompt, /prompt set <text>, /prompt reset", "ru": "Использование: /prompt, /prompt set <текст>, /prompt reset"},
    "usage_self": {"en": "Today: {messages} messages, {tokens} tokens{quota}.", "ru": "Сегодня: сообщений {messages}, токенов {tokens}{quota}."},
    "usage_all": {"en": "Usage today:\n{rows}", "ru": "Потребление за сегодня:\n{rows}"},
    "usage_none": {"en": "No usage today.", "ru": "Сегодня ещё ничего."},
    "queued": {"en": "⏳ Waiting for the local model, {ahead} ahead…", "ru": "⏳ Жду локальную модель, впереди: {ahead}…"},
    "sources": {"en": "Sources:", "ru": "Источники:"},
    "page": {"en": "p.", "ru": "с."},
    "empty_answer": {"en": "(the model returned an empty answer)", "ru": "(модель вернула пустой ответ)"},
    "err_model": {"en": "⚠️ The model failed: {reason}. Please try again in a moment.",
                  "ru": "⚠️ Модель не ответила: {reason}. Попробуйте ещё раз чуть позже."},
    "err_timeout": {"en": "⚠️ The model did not answer in time. Please try again.",
                    "ru": "⚠️ Модель не ответила вовремя. Попробуйте ещё раз."},
    "err_unavailable": {"en": "⚠️ This model is not available: {reason}.", "ru": "⚠️ Эта модель недоступна: {reason}."},
    "eval_usage": {
        "en": "Send a cases file (JSONL or CSV) with the caption /eval, optionally with --mode \"LEVEL MODEL\" (repeatable), --repeats N, --judge MODEL|none, --target A. /eval stop cancels a running evaluation.",
        "ru": "Пришлите файл с кейсами (JSONL или CSV) с подписью /eval; можно добавить --mode \"УРОВЕНЬ МОДЕЛЬ\" (несколько раз), --repeats N, --judge МОДЕЛЬ|none, --target A. /eval stop останавливает оценку.",
    },
    "eval_busy": {"en": "An evaluation is already running ({percent}% done). Wait for it, or /eval stop.", "ru": "Оценка уже идёт (готово {percent}%). Дождитесь её или отправьте /eval stop."},
    "eval_bad_args": {"en": "Cannot start the evaluation: {reason}", "ru": "Не могу начать оценку: {reason}"},
    "eval_bad_file": {"en": "The cases file cannot be used: {reason}", "ru": "Файл с кейсами не подходит: {reason}"},
    "eval_progress": {"en": "⏳ Evaluating: {done}/{total} runs", "ru": "⏳ Оценка: {done}/{total} прогонов"},
    "eval_done": {"en": "✅ Evaluation finished: {total} runs.", "ru": "✅ Оценка завершена: {total} прогонов."},
    "eval_stopped": {"en": "⏹ Evaluation stopped after {done}/{total} runs.", "ru": "⏹ Оценка остановлена после {done}/{total} прогонов."},
    "eval_stopping": {"en": "Stopping the evaluation…", "ru": "Останавливаю оценку…"},
    "eval_nothing": {"en": "No evaluation is running.", "ru": "Оценка сейчас не идёт."},
    "err_kb_unavailable": {"en": "⚠️ The knowledge base is unavailable right now, so I cannot answer from it. "
                                 "Please try again later.",
                           "ru": "⚠️ База знаний сейчас недоступна, поэтому ответить по ней я не могу. "
                                 "Попробуйте позже."},
    "err_internal": {"en": "⚠️ Something went wrong on our side; it has been logged. Please try again.",
                     "ru": "⚠️ У нас что-то сломалось; ошибка записана в журнал. Попробуйте ещё раз."},
    "err_input_too_long": {"en": "Your message is too long ({got} characters; the limit is {limit}).",
                           "ru": "Сообщение слишком длинное ({got} символов; предел {limit})."},
    "err_empty_input": {"en": "Please send some text.", "ru": "Пришлите, пожалуйста, текст."},
    "err_busy": {"en": "I'm still answering your previous message here; /stop cancels it.",
                 "ru": "Я ещё отвечаю на предыдущее сообщение; /stop отменит его."},
    "err_rate_limited": {"en": "Too many messages: please wait {seconds} s.", "ru": "Слишком много сообщений: подождите {seconds} с."},
    "err_quota_exceeded": {"en": "Your daily token quota ({quota}) is used up; it renews at 00:00 UTC.",
                           "ru": "Дневная квота токенов ({quota}) исчерпана; она обновится в 00:00 UTC."},
    "answer_interrupted": {"en": "⚠️ The answer was interrupted: {reason}.", "ru": "⚠️ Ответ прервался: {reason}."},
    "kb_too_large": {"en": "⚠️ {name} is {size} MB; files up to {limit} MB can be added.",
                     "ru": "⚠️ {name}: {size} МБ; можно добавлять файлы до {limit} МБ."},
    "kb_downloaded": {"en": "⏳ {name}: downloaded ({size} KB), reading…",
                      "ru": "⏳ {name}: скачан ({size} КБ), читаю…"},
    "kb_extracted": {"en": "⏳ {name}: extracted {pages}{chunks} chunks, indexing…",
                     "ru": "⏳ {name}: извлечено {pages}фрагментов: {chunks}, индексирую…"},
    "kb_pages": {"en": "{n} pages, ", "ru": "страниц: {n}, "},
    "kb_queued": {"en": "⏳ {name}: waiting for {ahead} upload(s) ahead… (/kb_cancel stops it)",
                  "ru": "⏳ {name}: жду, впереди загрузок: {ahead}… (/kb_cancel отменит)"},
    "kb_embedding": {"en": "⏳ {name}: indexing, {done} of {chunks} chunks… (/kb_cancel stops it)",
                     "ru": "⏳ {name}: индексирую, фрагментов {done} из {chunks}… (/kb_cancel отменит)"},
    "kb_cancelled": {"en": "⏹ {name}: upload cancelled; the knowledge base is unchanged.",
                     "ru": "⏹ {name}: загрузка отменена; база знаний не изменилась."},
    "kb_stopped_restart": {"en": "⏹ {name}: the bot restarted before indexing finished; the knowledge base is "
                                 "unchanged. Send the file again.",
                           "ru": "⏹ {name}: бот перезапустился до конца индексации; база знаний не изменилась. "
                                 "Пришлите файл ещё раз."},
    "kb_cancelling": {"en": "Cancelling: {names}.", "ru": "Отменяю: {names}."},
    "kb_nothing_to_cancel": {"en": "No upload in progress here.", "ru": "Здесь нет загрузок в процессе."},
    "kb_busy": {"en": "⚠️ {name}: {n} uploads are in progress already; send it when one has finished "
                      "(/kb_cancel stops this chat's).",
                "ru": "⚠️ {name}: уже идут загрузки ({n}); пришлите файл, когда одна закончится "
                      "(/kb_cancel отменит загрузки этого чата)."},
    "kb_indexed": {"en": "✅ {name}: {chunks} chunks indexed in {seconds:.1f} s (id {doc_id}){replaced}.",
                   "ru": "✅ {name}: проиндексировано фрагментов: {chunks} за {seconds:.1f} с "
                         "(id {doc_id}){replaced}."},
    "kb_replaced": {"en": "; it replaced the same earlier upload", "ru": "; заменил прежнюю загрузку того же файла"},
    "kb_failed": {"en": "❌ {name}: {reason}", "ru": "❌ {name}: {reason}"},
    "kb_empty": {"en": "The knowledge base is empty. Send a file (TXT, Markdown, PDF, DOCX, HTML) to add it.",
                 "ru": "База знаний пуста. Пришлите файл (TXT, Markdown, PDF, DOCX, HTML), чтобы добавить его."},
    "kb_list": {"en": "Documents ({n}):", "ru": "Документы ({n}):"},
    "kb_row": {"en": "{doc_id} · {name} · {chunks} chunks · {date} · by {uploader}",
               "ru": "{doc_id} · {name} · фрагментов: {chunks} · {date} · загрузил {uploader}"},
    "kb_download_failed": {"en": "Telegram did not let the bot download the file; try again, or send a smaller file.",
                           "ru": "Telegram не дал боту скачать файл; попробуйте ещё раз или пришлите файл поменьше."},
    "kb_del_usage": {"en": "Usage: /kb_del <id> (see /kb)", "ru": "Использование: /kb_del <id> (см. /kb)"},
    "kb_deleted": {"en": "Deleted {doc_id}.", "ru": "Удалён {doc_id}."},
    "kb_not_found": {"en": "No document with id {doc_id} (see /kb).", "ru": "Нет документа с id {doc_id} (см. /kb)."},
    "kb_search_usage": {"en": "Usage: /kb_search <query>", "ru": "Использование: /kb_search <запрос>"},
    "kb_no_hits": {"en": "Nothing found.", "ru": "Ничего не найдено."},
    "kb_bad_date": {"en": "Bad date in the caption: use date=YYYY-MM-DD.",
                    "ru": "Неверная дата в подписи: используйте date=ГГГГ-ММ-ДД."},
    "restarted": {"en": "the bot restarted", "ru": "бот перезапустился"},
    "on": {"en": "on", "ru": "вкл"},
    "off": {"en": "off", "ru": "выкл"},
    "cmd_start": {"en": "Start", "ru": "Начать"},
    "cmd_compare": {"en": "Two modes side by side, you vote; memory keeps the winner (tie or no vote: A)",
                    "ru": "Два режима рядом, вы голосуете; память хранит победителя (ничья или без голоса: A)"},
    "cmd_leaderboard": {"en": "Modes ranked by your side-by-side votes", "ru": "Рейтинг режимов по голосам сравнений"},
    "compare_state": {"en": "{a} vs {b}", "ru": "{a} против {b}"},
    "compare_state_off": {"en": "off", "ru": "выключено"},
    "compare_pick_a": {"en": "Side by side: {state}.\nPick mode A:", "ru": "Сравнение: {state}.\nВыберите режим A:"},
    "compare_pick_b": {"en": "A: {a}.\nPick mode B:", "ru": "A: {a}.\nВыберите режим B:"},
    "compare_off_button": {"en": "Turn off", "ru": "Выключить"},
    "compare_set": {
        "en": "Side by side: {a} vs {b}. Each question gets two answers, A and B in random order; vote under the "
              "second. The chat's memory keeps the winner (on a tie or before any vote: answer A). /compare off "
              "goes back to one answer.",
        "ru": "Сравнение: {a} против {b}. На каждый вопрос два ответа, A и B в случайном порядке; голосуйте под "
              "вторым. Память чата хранит победителя (при ничьей или до голосования: ответ A). /compare off "
              "возвращает один ответ.",
    },
    "compare_off": {"en": "Side by side is off: one answer per question again.",
                    "ru": "Сравнение выключено: снова один ответ на вопрос."},
    "compare_usage": {
        "en": "Usage: /compare <mode A> | <mode B> (e.g. /compare prompt cloud | rag cloud), /compare off, or "
              "/compare alone for buttons.",
        "ru": "Использование: /compare <режим A> | <режим B> (например, /compare prompt cloud | rag cloud), "
              "/compare off или просто /compare для кнопок.",
    },
    "compare_same": {"en": "Pick two different modes to compare.", "ru": "Выберите два разных режима."},
    "compare_stale": {"en": "That menu is out of date: send /compare again.",
                      "ru": "Это меню устарело: отправьте /compare ещё раз."},
    "vote_a": {"en": "A is better", "ru": "A лучше"},
    "vote_b": {"en": "B is better", "ru": "B лучше"},
    "vote_tie": {"en": "Tie", "ru": "Ничья"},
    "vote_bad": {"en": "Both bad", "ru": "Оба плохи"},
    "vote_recorded": {"en": "Vote recorded: {choice}", "ru": "Голос учтён: {choice}"},
    "vote_stale": {"en": "This comparison can no longer be voted on.", "ru": "За это сравнение уже нельзя голосовать."},
    "leaderboard_empty": {
        "en": "No votes yet in season {season}. Compare two modes with /compare and vote under the answers.",
        "ru": "В сезоне {season} голосов пока нет. Сравните два режима через /compare и голосуйте под ответами.",
    },
    "leaderboard_head": {
        "en": "Season {season}, {votes} votes. Rating: Bradley-Terry on the Elo scale, 95% bootstrap interval.",
        "ru": "Сезон {season}, голосов: {votes}. Рейтинг: Брэдли-Терри по шкале Эло, 95% бутстреп-интервал.",
    },
    "leaderboard_reset": {"en": "New leaderboard season {season} started; earlier votes are kept.",
                          "ru": "Начат новый сезон рейтинга ({season}); прежние голоса сохранены."},
    "leaderboard_usage": {"en": "Usage: /leaderboard, or /leaderboard reset (bot admins).",
                          "ru": "Использование: /leaderboard или /leaderboard reset (админы бота)."},
    "cmd_help": {"en": "Help and commands", "ru": "Справка и команды"},
    "cmd_mode": {"en": "Choose level and model", "ru": "Выбрать уровень и модель"},
    "cmd_reset": {"en": "Forget this chat's history", "ru": "Забыть историю чата"},
    "cmd_stop": {"en": "Stop the current answer and your waiting questions", "ru": "Остановить ответ и ваши вопросы в очереди"},
    "cmd_steps": {"en": "Show agent steps (on/off)", "ru": "Показывать шаги агента (on/off)"},
    "cmd_usage": {"en": "Usage today", "ru": "Потребление за сегодня"},
    "cmd_prompt": {"en": "Show, set or reset the system prompt", "ru": "Показать, задать или сбросить системный промпт"},
    "cmd_kb": {"en": "List the knowledge base's documents", "ru": "Документы базы знаний"},
    "cmd_kb_add": {"en": "Add a file to the knowledge base", "ru": "Добавить файл в базу знаний"},
    "cmd_kb_del": {"en": "Delete a document", "ru": "Удалить документ"},
    "cmd_kb_search": {"en": "Search the knowledge base", "ru": "Поиск по базе знаний"},
    "cmd_kb_cancel": {"en": "Cancel this chat's uploads in progress", "ru": "Отменить загрузки этого чата"},
    "cmd_eval": {"en": "Evaluate levels and models on a cases file; /eval stop cancels",
                 "ru": "Оценить уровни и модели по файлу кейсов; /eval stop отменяет"},
    "kb_add_usage": {"en": "Send a file with the caption /kb_add (in a private chat, just send the file).",
                     "ru": "Пришлите файл с подписью /kb_add (в личном чате — просто пришлите файл)."},
    "choose_number": {"en": "Type a number to choose.", "ru": "Введите номер, чтобы выбрать."},
    "file_written": {"en": "File: {path}", "ru": "Файл: {path}"},
    "no_such_choice": {"en": "No choice {n} here.", "ru": "Нет варианта {n}."},
    "unknown_command": {"en": "Unknown command {name}; /help lists them.",
                        "ru": "Неизвестная команда {name}; список: /help."},
    "terminal_banner": {"en": "adaptbot — chat {chat_id}, mode {mode}. /help for commands, /quit to leave.",
                        "ru": "adaptbot — чат {chat_id}, режим {mode}. /help — команды, /quit — выход."},
    "cmd_retry": {"en": "Answer the last question again", "ru": "Ответить на последний вопрос заново"},
    "cmd_lang": {"en": "Answer language (ru/en/auto)", "ru": "Язык ответов (ru/en/auto)"},
    "cmd_guards": {"en": "Show or switch the guards (loops, language, numbers)",
                   "ru": "Показать или переключить защиты (повторы, язык, числа)"},
    "guard_loop": {"en": "⚠️ The model started repeating itself; stopped. /retry asks again.",
                   "ru": "⚠️ Модель начала повторяться; ответ остановлен. /retry — спросить заново."},
    "guard_language": {"en": "⚠️ This answer is not in the chat's language, even after asking the model again.",
                       "ru": "⚠️ Ответ не на языке чата, даже после повторной просьбы к модели."},
    "guard_numbers": {"en": "⚠ not found in the sources: {numbers}", "ru": "⚠ нет в источниках: {numbers}"},
    "retry_nothing": {"en": "Nothing to retry: ask a question first.",
                      "ru": "Нечего повторять: сначала задайте вопрос."},
    "guards_state": {
        "en": "Guards in this chat: loops {loops}, language {language}, numbers {numbers}; answer language: {chat_lang}.\n"
              "Switch one: /guards loops|language|numbers on|off. Language: /lang ru|en|auto.{counts}",
        "ru": "Защиты в этом чате: повторы {loops}, язык {language}, числа {numbers}; язык ответов: {chat_lang}.\n"
              "Переключить: /guards loops|language|numbers on|off. Язык: /lang ru|en|auto.{counts}",
    },
    "guards_counts": {"en": "\n\nGuard events by mode:\n{rows}", "ru": "\n\nСрабатывания защит по режимам:\n{rows}"},
    "guard_set": {"en": "Guard {name}: {state}.", "ru": "Защита {name}: {state}."},
    "lang_state": {"en": "Answer language: {chat_lang}. Set it: /lang ru|en|auto.",
                   "ru": "Язык ответов: {chat_lang}. Задать: /lang ru|en|auto."},
    "lang_auto": {"en": "auto (the language you write in)", "ru": "авто (язык, на котором вы пишете)"},
    "err_guard_unknown": {"en": "Unknown guard “{name}”. Guards: {names}.",
                          "ru": "Неизвестная защита «{name}». Защиты: {names}."},
    # --- feedback on answers (bot/handlers/feedback.py, bot/commands/feedback.py) ---
    "fb_up": {"en": "Thanks! 👍 noted.", "ru": "Спасибо! 👍 учтён."},
    "fb_down": {"en": "👎 noted. What was wrong? (optional)", "ru": "👎 учтён. Что не так? (необязательно)"},
    "fb_reason": {"en": "Noted: {reason}.", "ru": "Учтено: {reason}."},
    "fb_gone": {"en": "This answer is no longer in the chat's memory (/reset or /retry), so it cannot be rated.",
                "ru": "Этого ответа больше нет в памяти чата (/reset или /retry), оценить его нельзя."},
    "fb_reason_wrong_facts": {"en": "wrong facts", "ru": "неверные факты"},
    "fb_reason_wrong_language": {"en": "wrong language", "ru": "не тот язык"},
    "fb_reason_ignored_instructions": {"en": "did not follow instructions", "ru": "не выполнил указания"},
    "fb_reason_too_long": {"en": "too long", "ru": "слишком длинно"},
    "fb_reason_other": {"en": "other", "ru": "другое"},
    "fb_no_reason": {"en": "no reason", "ru": "без причины"},
    "cmd_fix": {"en": "Reply to an answer: correct it (kept for training, replaces it in memory)",
                "ru": "Ответом на ответ бота: исправить его (сохраняется для обучения, заменяет его в памяти)"},
    "cmd_feedback": {"en": "Feedback per mode for the last 7 and 30 days",
                     "ru": "Отзывы по режимам за 7 и 30 дней"},
    "cmd_export": {"en": "Export a training dataset (SFT, DPO, KTO) as a file",
                   "ru": "Выгрузить обучающий датасет (SFT, DPO, KTO) файлом"},
    "fix_usage": {"en": "Reply to one of my answers with /fix <better answer> to correct it.",
                  "ru": "Чтобы исправить мой ответ, ответьте на него: /fix <лучший ответ>."},
    "fix_not_bot": {"en": "/fix corrects my answers: reply to one of my messages, not someone else's.",
                    "ru": "/fix исправляет мои ответы: ответьте на моё сообщение, а не на чужое."},
    "fix_empty": {"en": "Write the better answer after /fix: /fix <better answer>.",
                  "ru": "Напишите лучший ответ после /fix: /fix <лучший ответ>."},
    "fix_gone": {"en": "That message is not an answer I still remember (/reset or /retry may have removed it).",
                 "ru": "Этого ответа нет в моей памяти (его могли убрать /reset или /retry)."},
    "fix_done": {"en": "✅ Correction saved: I will remember your version of that answer.",
                 "ru": "✅ Исправление сохранено: я запомню ваш вариант этого ответа."},
    "feedback_period": {"en": "Last {days} days:", "ru": "За {days} дн.:"},
    "feedback_row": {"en": "{mode}: 👍 {up} · {down} · corrections {corrections} · votes {votes}",
                     "ru": "{mode}: 👍 {up} · {down} · исправлений {corrections} · голосов {votes}"},
    "feedback_none": {"en": "no feedback", "ru": "отзывов нет"},
    "feedback_guards": {"en": "Guard events (since the start):", "ru": "Срабатывания защит (за всё время):"},
    "export_usage": {
        "en": "Usage: /export sft|dpo|kto [--since YYYY-MM-DD] [--mode \"LEVEL MODEL\"] [--min-votes N] "
              "[--lang ru|en] [--keep-flagged] {reason}",
        "ru": "Использование: /export sft|dpo|kto [--since ГГГГ-ММ-ДД] [--mode \"УРОВЕНЬ МОДЕЛЬ\"] [--min-votes N] "
              "[--lang ru|en] [--keep-flagged] {reason}",
    },
    "export_private": {"en": "The dataset holds every chat's conversations: send /export to me in a private chat.",
                       "ru": "В наборе данных переписка всех чатов: отправьте /export мне в личном чате."},
    "export_empty": {
        "en": "Nothing to export as {kind}: no stored votes or feedback match. Widen --since, --mode or --lang, "
              "lower --min-votes, or add --keep-flagged.",
        "ru": "Нечего выгрузить как {kind}: подходящих голосов и отзывов нет. Расширьте --since, --mode или --lang, "
              "уменьшите --min-votes или добавьте --keep-flagged.",
    },
    "export_too_large": {"en": "The export is {size} MB, over what a bot may send: use `adaptbot dataset export`.",
                         "ru": "Выгрузка весит {size} МБ — больше, чем бот может отправить: используйте "
                               "`adaptbot dataset export`."},
    "export_caption": {"en": "{kind}: {n} examples", "ru": "{kind}: примеров {n}"},
    "export_from": {"en": "from", "ru": "из"},
    "export_left_out": {"en": "left out", "ru": "отброшено"},
    "err_lang_usage": {"en": "Usage: /lang ru, /lang en or /lang auto.",
                       "ru": "Использование: /lang ru, /lang en или /lang auto."},
}

LANGUAGES = ("en", "ru")

# Russian texts for the knowledge base's errors, by class name (their English messages are complete sentences)
KNOWLEDGE_ERRORS_RU = {
    "UnsupportedFileError": "Неподдерживаемый тип файла: пришлите TXT, Markdown, PDF, DOCX или HTML.",
    "EmptyDocumentError": "В файле нет текста для индексации.",
    "EncryptedFileError": "Файл защищён паролем: пришлите его без пароля.",
    "CorruptFileError": "Файл повреждён и не читается; проверьте, что он открывается, и попробуйте снова.",
    "FileTooLargeError": "Файл слишком большой для индексации.",
    "ParseTimeoutError": "Разбор файла занял слишком много времени; возможно, файл испорчен.",
    "ParseLimitError": "Разбор файла превысил пределы памяти; возможно, файл испорчен.",
    "UnsafeFileNameError": "Имя файла содержит путь или управляющие символы; переименуйте файл и пришлите снова.",
    "EmbeddingModelError": "Не удалось загрузить модель эмбеддингов; проверьте EMBEDDING_MODEL.",
    "StoreError": "Хранилище базы знаний не ответило; ничего не изменено. Попробуйте позже.",
    "InvalidInputError": "Неверные данные.",
}


def knowledge_error(exc: Exception, lang: str) -> str:
    """A knowledge-base error in the user's language (the nearest known class; English: the error's message)."""
    if lang == "ru":
        for cls in type(exc).__mro__:
            if cls.__name__ in KNOWLEDGE_ERRORS_RU:
                return KNOWLEDGE_ERRORS_RU[cls.__name__]
    return str(exc)


def lang_of(code: str | None) -> str:
    """Russian for ru/uk/be users, English otherwise."""
    return "ru" if code and code.split("-")[0].lower() in {"ru", "uk", "be"} else "en"


def t(key: str, lang: str = "en", **params: object) -> str:
    texts = TEXTS[key]
    return texts.get(lang, texts["en"]).format(**params)
