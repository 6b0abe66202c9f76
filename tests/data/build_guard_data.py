"""Build the loop guard's data: clean answers (no loop may be found) and synthetic loops (with where each starts).

    python tests/data/build_guard_data.py      # rewrites answers_clean.jsonl and loops_synthetic.jsonl

Written for this project. The clean answers are hand-written assistant answers in Russian and English (prose,
code, tables, lists, poems and songs with refrains); tables, code answers and schedules are also assembled from
small hand-written parts, so their repetitive structure varies. The loops are built by a seeded generator from
openings and units taken from those answers: one word, a phrase, a sentence, a paragraph, or a numbered list
item repeated, right away or after a good opening. `loop_start` is the offset where the first redundant copy
begins. Records with an even `n` are for tuning, odd ones are held out.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent

# ------------------------------------------------------------------ hand-written prose answers

PROSE_EN = [
    "Sure! The main difference is that a list is mutable and a tuple is not. You can append to a list, "
    "remove items or change them in place, while a tuple stays exactly as it was created. Because of that, "
    "tuples can be used as dictionary keys and are slightly faster to create. Use a list when the collection "
    "will change, and a tuple for fixed records like coordinates.",
    "It depends on what you need. If you want a quick estimate, multiply the monthly payment by the number of "
    "months and subtract the principal: that is roughly the total interest you will pay. For an exact figure, "
    "use the amortization formula or ask your bank for the schedule, because fees and rounding change the result "
    "slightly.",
    "Good question. Coffee itself does not dehydrate you in normal amounts. Caffeine is a mild diuretic, but the "
    "water in the cup more than makes up for it. Studies that compared coffee drinkers with water drinkers found "
    "no meaningful difference in hydration for up to about four cups a day.",
    "I could not find that information in the documents you uploaded. The handbook covers vacation and sick "
    "leave, but says nothing about parental leave. You may want to ask HR directly or check the intranet.",
    "Here is a short summary of the article:\n\nThe authors argue that small language models can match larger "
    "ones on narrow tasks when they are fine-tuned on high-quality data. They test three model sizes on customer "
    "support tickets and find that the smallest fine-tuned model beats the largest zero-shot one on accuracy, "
    "while costing a fraction to run.\n\nThe main limitation is that the evaluation uses a single company's "
    "data, so the results may not generalise.",
    "To reset your password, open the login page and click \"Forgot password\". Enter the email address you "
    "registered with, and you will receive a link that is valid for one hour. If the email does not arrive, "
    "check your spam folder, then contact support.",
    "The French Revolution began in 1789 with the storming of the Bastille. It ended the absolute monarchy, "
    "introduced the idea that sovereignty belongs to the people, and inspired revolutions across Europe. Its "
    "later years, however, were marked by the Terror, and the period closed with Napoleon's rise to power.",
    "Thanks for the details! Based on what you described, the error comes from the database connection being "
    "closed before the query runs. Make sure you open the session inside the `async with` block and do not "
    "return the session object out of it. If you share the full traceback, I can point to the exact line.",
    "No, you do not need a visa for a short tourist stay of up to 90 days if you hold a passport from one of the "
    "listed countries. You will need a return ticket and proof of accommodation, and your passport should be "
    "valid for at least three months after departure.",
    "Photosynthesis is the process plants use to turn light into chemical energy. In the chloroplasts, light "
    "splits water molecules, releasing oxygen. The energy captured is then used to build sugars from carbon "
    "dioxide in the Calvin cycle. Those sugars feed the plant and, through food chains, almost every other "
    "living thing.",
    "Yes. Yes, it works on Windows too, but you need to install the Visual C++ build tools first, because the "
    "package compiles a small extension during installation.",
    "I'm sorry, but I can't help with that request. If you're dealing with a security issue on your own "
    "system, I can explain how to audit it or harden the configuration instead.",
    "The short answer: no. The longer answer: the setting only affects new chats, so your existing conversations "
    "keep the model they were started with. To switch an old chat, use /mode in that chat.",
    "Here's what I would do. First, reproduce the problem with the smallest possible input. Second, add logging "
    "around the function that fails and compare the values with what you expect. Third, write a test that fails "
    "for the same reason, and only then change the code. That way you know the fix actually fixes it.",
    "A mortgage broker works for you, not the bank: they compare offers from several lenders and help with the "
    "paperwork. A bank's loan officer can only offer that bank's products. Brokers are often paid a commission "
    "by the lender, so ask how they are paid before you sign anything.",
    "The word \"quarantine\" comes from the Venetian \"quaranta giorni\", forty days: ships arriving during "
    "plague epidemics had to wait that long before passengers could land.",
    "Both options are fine. If you value battery life, take the smaller laptop; if you edit video, the larger one "
    "with the dedicated graphics card will save you a lot of waiting. For office work and browsing you will not "
    "notice a difference.",
    "Hmm, hmm. Let me think about it again. You said the train leaves at 9 and takes two hours, and the meeting "
    "is at 11:30, so you have thirty minutes to get from the station to the office. That should be enough if the "
    "office is close to the station.",
    "According to the handbook (section 4.2), employees get 25 days of paid vacation per year, plus public "
    "holidays. Unused days can be carried over until March 31 of the following year.\n\nSources: [1] handbook.pdf, "
    "p. 12",
    "To be honest, it is hard to say without seeing the data. A drop of that size could be seasonal, could come "
    "from a tracking change, or could be real. Compare the same weeks last year and check whether the analytics "
    "tag changed recently.",
    "That's a classic! The answer is a towel. It gets wetter the more it dries.",
    "Great, glad it worked! Let me know if anything else comes up.",
    "The capital of Australia is Canberra, not Sydney. It was chosen as a compromise between Sydney and "
    "Melbourne, which both wanted the title, and was purpose-built as the capital in the early twentieth century.",
    "OK, OK, I understand. Let's start over: what exactly do you see on the screen when you press the button?",
    "Run the tests again with `-x` so pytest stops at the first failure, and `-vv` to see the full diff. The "
    "failure you pasted suggests that the fixture returns a list while the test expects a tuple.",
]

PROSE_RU = [
    "Конечно! Главное отличие списка от кортежа в том, что список можно изменять, а кортеж нет. В список можно "
    "добавлять элементы, удалять их и менять на месте, а кортеж остаётся таким, каким его создали. Поэтому "
    "кортеж можно использовать как ключ словаря. Берите список, если коллекция будет меняться, и кортеж — для "
    "неизменных записей вроде координат.",
    "Всё зависит от того, что вам нужно. Для быстрой оценки умножьте ежемесячный платёж на число месяцев и "
    "вычтите сумму кредита: это примерно и есть переплата. Для точной цифры попросите у банка график платежей, "
    "потому что комиссии и округления немного меняют результат.",
    "К сожалению, в загруженных документах нет информации об этом. В справочнике описаны отпуск и больничный, "
    "но ничего не сказано о декретном отпуске. Лучше уточнить в отделе кадров.",
    "Вот краткое содержание статьи.\n\nАвторы утверждают, что небольшие языковые модели после дообучения на "
    "качественных данных не уступают крупным в узких задачах. Они сравнили три размера моделей на обращениях в "
    "поддержку: самая маленькая дообученная модель оказалась точнее самой большой без дообучения и при этом "
    "обходится в разы дешевле.\n\nГлавное ограничение — данные одной компании, так что выводы могут не "
    "переноситься на другие.",
    "Чтобы сбросить пароль, откройте страницу входа и нажмите «Забыли пароль?». Введите адрес почты, на который "
    "зарегистрирован аккаунт, и вам придёт ссылка, действующая один час. Если письма нет, проверьте папку "
    "«Спам», а затем напишите в поддержку.",
    "Великая французская революция началась в 1789 году со взятия Бастилии. Она покончила с абсолютной "
    "монархией, провозгласила, что власть принадлежит народу, и вдохновила революции по всей Европе. Однако её "
    "поздние годы были отмечены террором, а завершилась эпоха приходом к власти Наполеона.",
    "Спасибо за подробности! Судя по описанию, ошибка возникает из-за того, что соединение с базой закрывается "
    "раньше, чем выполняется запрос. Откройте сессию внутри блока `async with` и не возвращайте её наружу. "
    "Если пришлёте полный трейсбек, подскажу точную строку.",
    "Нет, для короткой туристической поездки до 90 дней виза не нужна, если у вас паспорт одной из стран из "
    "списка. Понадобятся обратный билет и подтверждение проживания, а паспорт должен действовать ещё минимум "
    "три месяца после выезда.",
    "Фотосинтез — это процесс, с помощью которого растения превращают энергию света в химическую. В "
    "хлоропластах свет расщепляет молекулы воды, и выделяется кислород. Полученная энергия идёт на синтез "
    "сахаров из углекислого газа в цикле Кальвина. Эти сахара питают само растение, а через пищевые цепи — "
    "почти всё живое.",
    "Да. Да, на Windows тоже работает, но сначала нужно поставить Visual C++ Build Tools: пакет при установке "
    "собирает небольшое расширение.",
    "Извините, с этим я помочь не могу. Если речь о безопасности вашей собственной системы, могу рассказать, "
    "как провести аудит или усилить настройки.",
    "Коротко: нет. Подробнее: настройка действует только на новые чаты, а в старых остаётся та модель, с "
    "которой они были начаты. Чтобы сменить модель в старом чате, используйте /mode прямо в нём.",
    "Я бы сделал так. Сначала воспроизведите проблему на минимальном примере. Затем добавьте логирование вокруг "
    "функции, которая падает, и сравните значения с ожидаемыми. Потом напишите тест, который падает по той же "
    "причине, и только после этого меняйте код. Так вы будете уверены, что исправление действительно работает.",
    "Слово «карантин» происходит от венецианского «quaranta giorni» — сорок дней: во время эпидемий чумы "
    "прибывшие корабли должны были ждать столько, прежде чем пассажиров пускали на берег.",
    "Оба варианта хороши. Если важна автономность, берите ноутбук поменьше; если монтируете видео, более "
    "крупный с дискретной видеокартой сэкономит много времени. Для офисной работы и интернета разницы вы не "
    "заметите.",
    "Так-так. Давайте ещё раз. Поезд отправляется в 9 и идёт два часа, встреча в 11:30, значит, у вас полчаса, "
    "чтобы добраться от вокзала до офиса. Этого хватит, если офис недалеко.",
    "Согласно справочнику (раздел 4.2), сотрудникам положено 28 календарных дней оплачиваемого отпуска в год. "
    "Неиспользованные дни можно перенести на следующий год.\n\nИсточники: [1] handbook.pdf, с. 12",
    "Честно говоря, без данных сложно сказать. Такое падение может быть сезонным, может быть связано с "
    "изменением счётчика, а может быть реальным. Сравните те же недели прошлого года и проверьте, не меняли ли "
    "недавно код аналитики.",
    "Это классическая загадка! Ответ — полотенце. Чем больше сушит, тем мокрее становится.",
    "Отлично, рад, что получилось! Пишите, если появятся ещё вопросы.",
    "Столица Австралии — Канберра, а не Сидней. Её выбрали как компромисс между Сиднеем и Мельбурном, которые "
    "оба претендовали на этот статус, и построили специально как столицу в начале двадцатого века.",
    "Хорошо, хорошо, понял. Давайте начнём сначала: что именно вы видите на экране после нажатия кнопки?",
    "Запустите тесты с ключом `-x`, чтобы pytest остановился на первой ошибке, и с `-vv`, чтобы увидеть полный "
    "diff. Судя по ошибке, фикстура возвращает список, а тест ожидает кортеж.",
    "Ёжики бывают разные: обыкновенный ёж живёт в Европе, ушастый — в степях Азии, а африканский карликовый "
    "часто живёт дома как питомец. Все они ведут ночной образ жизни и питаются в основном насекомыми.",
    "Нет-нет, всё в порядке: предупреждение можно игнорировать. Оно говорит лишь о том, что в следующей версии "
    "библиотеки параметр переименуют, и на работу кода сейчас не влияет.",
    "Чтобы приготовить хороший борщ, сначала сварите бульон на говядине, затем обжарьте лук, морковь и свёклу "
    "с томатной пастой. Добавьте в бульон картофель и капусту, через десять минут — зажарку, и варите ещё "
    "пятнадцать минут. Дайте борщу настояться и подавайте со сметаной.",
]

# ------------------------------------------------------------------ hand-written lists

LISTS = [
    ("en", "Here are a few ways to speed up your laptop:\n\n1. Remove programs that start with the system.\n"
           "2. Free up disk space: keep at least 15% of the drive empty.\n3. Update the operating system and "
           "drivers.\n4. Check for malware with the built-in scanner.\n5. If it is still slow, consider "
           "replacing the hard disk with an SSD.\n\nThe last step usually gives the biggest improvement."),
    ("ru", "Вот несколько способов ускорить ноутбук:\n\n1. Уберите программы из автозагрузки.\n2. Освободите "
           "место на диске: хотя бы 15% должно быть свободно.\n3. Обновите систему и драйверы.\n4. Проверьте "
           "компьютер на вирусы встроенным антивирусом.\n5. Если всё ещё медленно, замените жёсткий диск на "
           "SSD.\n\nПоследний шаг обычно даёт самый большой эффект."),
    ("en", "Pros:\n- Cheap to run\n- Works offline\n- Easy to fine-tune\n\nCons:\n- Weaker at reasoning\n- "
           "Short context\n- Needs a GPU for fast answers"),
    ("ru", "Плюсы:\n- Дёшево в эксплуатации\n- Работает без интернета\n- Легко дообучить\n\nМинусы:\n- "
           "Слабее в рассуждениях\n- Короткий контекст\n- Для быстрых ответов нужна видеокарта"),
    ("en", "Packing list for a weekend hike:\n\n- [ ] Backpack\n- [ ] Water bottle\n- [ ] Rain jacket\n- [ ] "
           "Warm hat\n- [ ] Map\n- [ ] First aid kit\n- [ ] Snacks\n- [ ] Headlamp\n- [ ] Phone charger\n- [ ] "
           "Sunscreen"),
    ("ru", "Список покупок:\n- молоко\n- хлеб\n- яйца\n- сыр\n- яблоки\n- гречка\n- масло\n- чай\n- сахар\n- "
           "соль"),
    ("en", "Answers to the quiz:\n\n1. True\n2. False\n3. True\n4. True\n5. False\n6. False\n7. True\n8. "
           "True\n9. False\n10. True"),
    ("ru", "Ответы на тест:\n\n1. Да\n2. Нет\n3. Да\n4. Да\n5. Нет\n6. Нет\n7. Да\n8. Да\n9. Нет\n10. Да"),
    ("en", "The steps are:\n\n1. Click **Settings**.\n2. Click **Privacy**.\n3. Click **Clear data**.\n4. "
           "Click **Confirm**.\n5. Click **Done**.\n\nThat's it: every step is a click, nothing to type."),
    ("ru", "Порядок действий:\n\n1. Нажмите **Настройки**.\n2. Нажмите **Конфиденциальность**.\n3. Нажмите "
           "**Очистить данные**.\n4. Нажмите **Подтвердить**.\n5. Нажмите **Готово**."),
    ("en", "Status of the services:\n\n- api: OK\n- web: OK\n- worker: OK\n- scheduler: OK\n- database: OK\n- "
           "cache: OK\n- search: OK\n- mailer: OK\n- billing: OK\n- metrics: OK\n\nEverything is running."),
    ("ru", "Состояние сервисов:\n\n- api: работает\n- web: работает\n- worker: работает\n- scheduler: работает\n"
           "- база данных: работает\n- кэш: работает\n- поиск: работает\n- почта: работает\n\nВсё в порядке."),
]

# ------------------------------------------------------------------ hand-written poems and songs with refrains

POEMS = [
    ("en", "Here's a short song about the sea:\n\n*Verse 1*\nThe boats go out at morning light,\nThe gulls are "
           "crying high,\nThe nets are heavy, ropes are tight,\nBeneath a silver sky.\n\n*Chorus*\nOh, roll "
           "away, roll away,\nThe sea will bring us home,\nOh, roll away, roll away,\nWherever we may "
           "roam.\n\n*Verse 2*\nThe storm comes in at half past nine,\nThe waves are tall and grey,\nWe hold "
           "the wheel and hold the line\nAnd sing the night away.\n\n*Chorus*\nOh, roll away, roll away,\nThe "
           "sea will bring us home,\nOh, roll away, roll away,\nWherever we may roam."),
    ("ru", "Вот песенка про зиму:\n\nПадает снег на крыши,\nПадает снег на сад,\nМы говорим всё тише,\nЗвёзды "
           "над нами горят.\n\nПрипев:\nЗима, зима, зима,\nБелые дома,\nЗима, зима, зима,\nНочь светла "
           "сама.\n\nКатятся санки с горки,\nСмех разлетелся вокруг,\nПахнет у мамы корки\nИ мандарины "
           "вдруг.\n\nПрипев:\nЗима, зима, зима,\nБелые дома,\nЗима, зима, зима,\nНочь светла сама."),
    ("en", "A lullaby:\n\nHush now, hush now, close your eyes,\nThe moon is climbing up the skies.\nHush now, "
           "hush now, go to sleep,\nThe stars are counting all the sheep.\n\nHush now, hush now, close your "
           "eyes,\nThe owl is wise, the owl is wise.\nHush now, hush now, go to sleep,\nThe night is soft, the "
           "night is deep."),
    ("ru", "Колыбельная:\n\nБаю-баюшки-баю,\nНе ложися на краю,\nПридёт серенький волчок\nИ ухватит за "
           "бочок.\n\nБаю-баюшки-баю,\nЯ тебе спою свою,\nБаю-баю, засыпай,\nГлазки сонные "
           "смыкай.\n\nБаю-баюшки-баю,\nБаю-баюшки-баю."),
    ("en", "Song for the team party:\n\nWe ship it on Monday, we fix it on Tuesday,\nWe test it on Wednesday, "
           "hooray, hooray!\nHooray, hooray, hooray for the team,\nHooray, hooray, we're living the "
           "dream!\n\nWe plan it on Thursday, we demo on Friday,\nWe rest on the weekend, hooray, "
           "hooray!\nHooray, hooray, hooray for the team,\nHooray, hooray, we're living the dream!"),
    ("ru", "Стихотворение с рефреном:\n\nЯ шёл по тропинке в лесу,\nИ ветер мне пел: «Не грусти».\nЯ нёс "
           "тишину, как росу,\nИ ветер мне пел: «Не грусти».\n\nЯ видел, как падает лист,\nИ ветер мне пел: "
           "«Не грусти».\nКак воздух осенний был чист!\nИ ветер мне пел: «Не грусти»."),
    ("en", "A chant for the football fans:\n\nLet's go, let's go, let's go, team!\nLet's go, let's go, let's "
           "go, team!\nOne more goal and the cup is ours,\nWe'll be singing for hours and hours!\nLet's go, "
           "let's go, let's go, team!"),
    ("ru", "Кричалка для болельщиков:\n\nВперёд, вперёд, вперёд, команда!\nВперёд, вперёд, вперёд, "
           "команда!\nЕщё один гол — и кубок наш,\nМы будем петь, входя в кураж!\nВперёд, вперёд, вперёд, "
           "команда!"),
    ("en", "Limerick with a refrain:\n\nA coder who lived in Peru\nHad a bug that just grew and grew,\nShe "
           "fixed it by night,\nBut by morning — not quite!\nOh, the bug that just grew and grew.\n\nShe "
           "rewrote it in Rust,\nAs everyone must,\nBut the bug that just grew and grew\nCame back in version "
           "two,\nOh, the bug that just grew and grew."),
    ("ru", "Весёлая песенка:\n\nЛа-ла-ла, ла-ла-ла,\nВесна пришла, весна пришла!\nЛа-ла-ла, ла-ла-ла,\nИ "
           "речка лёд свой унесла.\n\nЛа-ла-ла, ла-ла-ла,\nЦветёт сирень, поёт пчела,\nЛа-ла-ла, "
           "ла-ла-ла,\nВесна пришла, весна пришла!"),
    ("en", "Twinkle, twinkle, little star,\nHow I wonder what you are!\nUp above the world so high,\nLike a "
           "diamond in the sky.\nTwinkle, twinkle, little star,\nHow I wonder what you are!"),
    ("ru", "В лесу родилась ёлочка,\nВ лесу она росла,\nЗимой и летом стройная,\nЗелёная была.\n\nМетель ей "
           "пела песенку:\n«Спи, ёлочка, бай-бай!»\nМороз снежком укутывал:\n«Смотри, не замерзай!»"),
    ("en", "Here's a marching cadence:\n\nLeft, left, left right left,\nLeft, left, left right left,\nWe walk "
           "all day and we walk all night,\nLeft, left, left right left.\n\nUp the hill and down the "
           "hill,\nLeft, left, left right left,\nKeep on moving, never still,\nLeft, left, left right left."),
    ("ru", "Считалочка:\n\nРаз, два, три, четыре, пять,\nВышел зайчик погулять.\nВдруг охотник выбегает,\nПрямо "
           "в зайчика стреляет.\nПиф-паф! Ой-ой-ой!\nУмирает зайчик мой.\n\nРаз, два, три, четыре, "
           "пять,\nБудем снова мы играть."),
    ("en", "Blues verse:\n\nWoke up this morning, my coffee was cold,\nWoke up this morning, my coffee was "
           "cold,\nThe server was down and the backups were old.\n\nCalled up the team, nobody was there,\nCalled "
           "up the team, nobody was there,\nJust me and the pager and a broken chair."),
    ("ru", "Частушки:\n\nЭх, раз, ещё раз,\nЕщё много-много раз!\nЗаиграла балалайка —\nЗаплясал весь "
           "пляс у нас.\n\nЭх, раз, ещё раз,\nЕщё много-много раз!\nПропою я вам частушку\nПро соседа "
           "дядю Стас."),
]

# ------------------------------------------------------------------ parts for tables

TABLE_DATA = [
    ("en", "Here is a comparison of the plans:", ["Plan", "Price", "Storage", "Support"],
     [["Free", "$0", "5 GB", "Community"], ["Basic", "$5", "50 GB", "Email"], ["Pro", "$12", "500 GB", "Email"],
      ["Team", "$25", "2 TB", "Priority"], ["Enterprise", "custom", "unlimited", "Priority"]]),
    ("ru", "Сравнение тарифов:", ["Тариф", "Цена", "Хранилище", "Поддержка"],
     [["Бесплатный", "0 ₽", "5 ГБ", "Форум"], ["Базовый", "390 ₽", "50 ГБ", "Почта"],
      ["Про", "990 ₽", "500 ГБ", "Почта"], ["Команда", "1 990 ₽", "2 ТБ", "Приоритет"]]),
    ("en", "Opening hours:", ["Day", "Open", "Close"],
     [["Monday", "09:00", "18:00"], ["Tuesday", "09:00", "18:00"], ["Wednesday", "09:00", "18:00"],
      ["Thursday", "09:00", "18:00"], ["Friday", "09:00", "17:00"], ["Saturday", "closed", "closed"],
      ["Sunday", "closed", "closed"]]),
    ("ru", "Расписание работы:", ["День", "Открытие", "Закрытие"],
     [["Понедельник", "09:00", "18:00"], ["Вторник", "09:00", "18:00"], ["Среда", "09:00", "18:00"],
      ["Четверг", "09:00", "18:00"], ["Пятница", "09:00", "17:00"], ["Суббота", "выходной", "выходной"],
      ["Воскресенье", "выходной", "выходной"]]),
    ("en", "Test results:", ["Test", "Result", "Time"],
     [[f"test_case_{i}", "passed", f"0.{i}1 s"] for i in range(1, 13)]),
    ("ru", "Результаты проверок:", ["Проверка", "Статус", "Комментарий"],
     [[f"Проверка {i}", "пройдена", "—"] for i in range(1, 11)]),
    ("en", "Largest cities:", ["City", "Country", "Population (millions)"],
     [["Tokyo", "Japan", "37.1"], ["Delhi", "India", "33.8"], ["Shanghai", "China", "29.9"],
      ["Dhaka", "Bangladesh", "23.9"], ["São Paulo", "Brazil", "22.8"], ["Cairo", "Egypt", "22.6"]]),
    ("ru", "Крупнейшие города России:", ["Город", "Население, млн"],
     [["Москва", "13,1"], ["Санкт-Петербург", "5,6"], ["Новосибирск", "1,6"], ["Екатеринбург", "1,5"],
      ["Казань", "1,3"], ["Нижний Новгород", "1,2"]]),
    ("en", "Feature support:", ["Feature", "Free", "Pro", "Team"],
     [[f, "✓", "✓", "✓"] for f in ["Chats", "History", "Export", "Search", "Tags", "Dark mode", "API"]]),
    ("ru", "Поддержка функций:", ["Функция", "Бесплатно", "Про", "Команда"],
     [[f, "да", "да", "да"] for f in ["Чаты", "История", "Экспорт", "Поиск", "Теги", "Тёмная тема"]]),
    ("en", "Monthly budget:", ["Item", "Planned", "Actual"],
     [["Rent", "1,200", "1,200"], ["Food", "400", "455"], ["Transport", "100", "92"], ["Utilities", "150", "150"],
      ["Fun", "200", "260"], ["Savings", "300", "300"]]),
    ("ru", "Домашний бюджет:", ["Статья", "План", "Факт"],
     [["Аренда", "45 000", "45 000"], ["Еда", "20 000", "22 300"], ["Транспорт", "5 000", "4 800"],
      ["Коммуналка", "7 000", "7 000"], ["Развлечения", "8 000", "9 500"]]),
]
TABLE_OUTROS = {
    "en": ["", "\n\nLet me know if you want a chart as well.", "\n\nAll figures are approximate.",
           "\n\nI can add more rows if needed."],
    "ru": ["", "\n\nЕсли нужно, могу построить график.", "\n\nВсе цифры приблизительные.",
           "\n\nМогу добавить ещё строки."],
}

# ------------------------------------------------------------------ parts for code answers

CODE_SNIPPETS = [
    ("python", "def fizzbuzz(n):\n    for i in range(1, n + 1):\n        if i % 15 == 0:\n            "
               "print(\"FizzBuzz\")\n        elif i % 3 == 0:\n            print(\"Fizz\")\n        elif i % 5 == 0:"
               "\n            print(\"Buzz\")\n        else:\n            print(i)"),
    ("python", "import pytest\n\n\n@pytest.mark.parametrize(\"a, b, expected\", [\n    (1, 1, 2),\n    (1, 2, 3),"
               "\n    (2, 2, 4),\n    (2, 3, 5),\n    (3, 3, 6),\n    (3, 4, 7),\n    (4, 4, 8),\n    (4, 5, 9),\n"
               "])\ndef test_add(a, b, expected):\n    assert add(a, b) == expected"),
    ("python", "matrix = [\n    [0, 0, 0, 0, 0, 0, 0, 0],\n    [0, 0, 0, 0, 0, 0, 0, 0],\n    [0, 0, 0, 0, 0, 0, 0, 0],"
               "\n    [0, 0, 0, 0, 0, 0, 0, 0],\n    [0, 0, 0, 0, 0, 0, 0, 0],\n    [0, 0, 0, 0, 0, 0, 0, 0],\n"
               "    [0, 0, 0, 0, 0, 0, 0, 0],\n    [0, 0, 0, 0, 0, 0, 0, 0],\n]"),
    ("javascript", "const routes = [\n  { path: '/', component: Home },\n  { path: '/about', component: About },\n"
                   "  { path: '/users', component: Users },\n  { path: '/users/:id', component: User },\n  { path: "
                   "'/settings', component: Settings },\n  { path: '*', component: NotFound },\n];"),
    ("sql", "SELECT department, COUNT(*) AS employees, AVG(salary) AS avg_salary\nFROM staff\nWHERE active = true"
            "\nGROUP BY department\nHAVING COUNT(*) > 5\nORDER BY avg_salary DESC;"),
    ("bash", "for f in *.jpg; do\n  convert \"$f\" -resize 50% \"small_$f\"\ndone"),
    ("yaml", "services:\n  web:\n    image: nginx:1.27\n    ports:\n      - \"80:80\"\n  api:\n    image: "
             "app:latest\n    ports:\n      - \"8000:8000\"\n  worker:\n    image: app:latest\n    command: worker"),
    ("python", "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n    def "
               "__add__(self, other):\n        return Point(self.x + other.x, self.y + other.y)\n\n    def "
               "__sub__(self, other):\n        return Point(self.x - other.x, self.y - other.y)\n\n    def "
               "__repr__(self):\n        return f\"Point({self.x}, {self.y})\""),
    ("css", ".btn { padding: 8px 16px; border-radius: 4px; }\n.btn-primary { background: #0066ff; color: #fff; }\n"
            ".btn-secondary { background: #eee; color: #333; }\n.btn-danger { background: #e00; color: #fff; }\n"
            ".btn-success { background: #0a0; color: #fff; }"),
    ("python", "LOG = [\n" + "".join(f"    \"2024-05-0{d} 12:00:00 INFO heartbeat ok\",\n" for d in range(1, 10))
     + "]"),
    ("text", "+-----+-----+-----+\n|  X  |  O  |  X  |\n+-----+-----+-----+\n|  O  |  X  |  O  |\n"
             "+-----+-----+-----+\n|  X  |  O  |  X  |\n+-----+-----+-----+"),
    ("python", "print(\"=\" * 40)\nprint(\"Report\")\nprint(\"=\" * 40)\nfor name, value in rows:\n    "
               "print(f\"{name:<20}{value:>20}\")\nprint(\"=\" * 40)"),
    ("go", "func main() {\n\tch := make(chan int)\n\tgo func() {\n\t\tfor i := 0; i < 10; i++ {\n\t\t\tch <- i\n"
           "\t\t}\n\t\tclose(ch)\n\t}()\n\tfor v := range ch {\n\t\tfmt.Println(v)\n\t}\n}"),
    ("json", "{\n  \"users\": [\n    {\"id\": 1, \"active\": true},\n    {\"id\": 2, \"active\": true},\n    "
             "{\"id\": 3, \"active\": true},\n    {\"id\": 4, \"active\": true},\n    {\"id\": 5, \"active\": "
             "true},\n    {\"id\": 6, \"active\": true}\n  ]\n}"),
    ("python", "assert parse('1') == 1\nassert parse('1') == 1\nassert parse('2') == 2\nassert parse('2') == 2\n"
               "assert parse('3') == 3\nassert parse('3') == 3"),
    ("rust", "\n".join([
        "#[derive(Debug, Clone, PartialEq)]", "enum Token {", "    Number(f64),", "    Plus,", "    Minus,",
        "    Star,", "    Slash,", "}", "", "fn token(c: char) -> Option<Token> {", "    match c {",
        "        '+' => Some(Token::Plus),", "        '-' => Some(Token::Minus),", "        '*' => Some(Token::Star),",
        "        '/' => Some(Token::Slash),", "        _ => None,", "    }", "}"])),
    ("html", "\n".join([
        '<ul class="menu">', '  <li><a href="/">Home</a></li>', '  <li><a href="/blog">Blog</a></li>',
        '  <li><a href="/about">About</a></li>', '  <li><a href="/contact">Contact</a></li>', "</ul>"])),
    ("dockerfile", "\n".join([
        "FROM python:3.12-slim", "WORKDIR /app", "COPY requirements.txt .",
        "RUN pip install --no-cache-dir -r requirements.txt", "COPY . .", "USER nobody",
        'CMD ["python", "-m", "bot"]'])),
    ("c", "\n".join([
        "#include <stdio.h>", "", "int main(void) {", "    for (int i = 1; i <= 10; i++) {",
        "        for (int j = 1; j <= 10; j++) {", '            printf("%4d", i * j);', "        }",
        '        printf("\\n");', "    }", "    return 0;", "}"])),
    ("makefile", "\n".join([
        ".PHONY: all test lint clean", "", "all: test lint", "", "test:", "\tpytest -q", "", "lint:",
        "\truff check .", "", "clean:", "\trm -rf build dist .pytest_cache"])),
    ("kotlin", "\n".join([
        "data class User(val id: Int, val name: String)", "", "val users = listOf(", '    User(1, "Anna"),',
        '    User(2, "Boris"),', '    User(3, "Vera"),', '    User(4, "Gleb"),', ")", "", "fun main() {",
        "    users.forEach { println(it) }", "}"])),
    ("python", "\n\n\n".join(
        f'def test_{name}():\n    assert reverse("{given}") == "{given[::-1]}"'
        for name, given in [("empty", ""), ("one", "a"), ("two", "ab"), ("palindrome", "abba")])),
    ("text", "\n".join(
        [f"2024-05-01 12:00:{s:02d} WARN retrying request (attempt {n})" for n, s in [(1, 1), (2, 3), (3, 7), (4, 15)]]
        + ["2024-05-01 12:00:31 ERROR giving up after 4 attempts"])),
]
CODE_INTROS = {
    "en": ["Here is an example:", "You can do it like this:", "Sure, here's the code:",
           "This should work:", "Try this version:"],
    "ru": ["Вот пример:", "Можно сделать так:", "Конечно, вот код:", "Это должно работать:",
           "Попробуйте такой вариант:"],
}
CODE_OUTROS = {
    "en": ["", "\n\nRun it and let me know if you get any errors.",
           "\n\nThe structure is repetitive on purpose: each entry follows the same pattern.",
           "\n\nNote that this is just a sketch; adapt the names to your project."],
    "ru": ["", "\n\nЗапустите и напишите, если будут ошибки.",
           "\n\nСтруктура повторяется намеренно: каждый элемент устроен одинаково.",
           "\n\nЭто набросок: подставьте свои имена."],
}

# ------------------------------------------------------------------ parts for schedules and itineraries

DAYS = {"en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
        "ru": ["Понедельник", "Вторник", "Среда", "Четверг", "Пятница", "Суббота", "Воскресенье"]}
WORKOUTS = {"en": ["Rest", "Run 5 km", "Strength training, 45 minutes", "Yoga, 30 minutes", "Swim 1 km",
                   "Cycling, 1 hour", "Run 5 km"],
            "ru": ["Отдых", "Бег 5 км", "Силовая тренировка, 45 минут", "Йога, 30 минут", "Плавание 1 км",
                   "Велосипед, 1 час", "Бег 5 км"]}


# ------------------------------------------------------------------ hand-written answers with legitimate repetition

TRICKY = [
    ("en", "prose", "Repeat after me: I am calm. I am calm. I am calm. Say it slowly, breathing out on each "
                    "phrase, and notice how your shoulders drop."),
    ("ru", "prose", "Повторяйте за мной: я спокоен. Я спокоен. Я спокоен. Говорите медленно, на выдохе, и "
                    "обратите внимание, как опускаются плечи."),
    ("en", "prose", "Peter Piper picked a peck of pickled peppers. A peck of pickled peppers Peter Piper picked. "
                    "If Peter Piper picked a peck of pickled peppers, where's the peck of pickled peppers Peter "
                    "Piper picked?"),
    ("ru", "prose", "Скороговорка: «Шла Саша по шоссе и сосала сушку». Попробуйте сказать её три раза "
                    "подряд: шла Саша по шоссе и сосала сушку, шла Саша по шоссе и сосала сушку, шла Саша по "
                    "шоссе и сосала сушку."),
    ("en", "prose", "Ho ho ho! Merry Christmas! Santa says: ho ho ho, have you been good this year?"),
    ("ru", "prose", "Ха-ха-ха, отличная шутка! 😄😄😄 Спасибо, подняли настроение."),
    ("en", "list", "Multiplication table for 7:\n\n7 × 1 = 7\n7 × 2 = 14\n7 × 3 = 21\n7 × 4 = 28\n7 × 5 = 35\n"
                   "7 × 6 = 42\n7 × 7 = 49\n7 × 8 = 56\n7 × 9 = 63\n7 × 10 = 70"),
    ("ru", "list", "Таблица умножения на 8:\n\n8 × 1 = 8\n8 × 2 = 16\n8 × 3 = 24\n8 × 4 = 32\n8 × 5 = 40\n"
                   "8 × 6 = 48\n8 × 7 = 56\n8 × 8 = 64\n8 × 9 = 72\n8 × 10 = 80"),
    ("en", "list", "FAQ\n\n**Q: Is it free?**\nA: Yes.\n\n**Q: Does it work offline?**\nA: Yes.\n\n**Q: Can I "
                   "export my data?**\nA: Yes.\n\n**Q: Is there a mobile app?**\nA: Yes.\n\n**Q: Do you sell my "
                   "data?**\nA: No."),
    ("ru", "list", "Частые вопросы\n\n**В: Это бесплатно?**\nО: Да.\n\n**В: Работает без интернета?**\nО: "
                   "Да.\n\n**В: Можно выгрузить данные?**\nО: Да.\n\n**В: Есть приложение?**\nО: Да.\n\n**В: Вы "
                   "продаёте данные?**\nО: Нет."),
    ("en", "list", "Examples:\n\nInput: \"abc\"\nOutput: \"cba\"\n\nInput: \"hello\"\nOutput: \"olleh\"\n\n"
                   "Input: \"a\"\nOutput: \"a\"\n\nInput: \"\"\nOutput: \"\"\n\nInput: \"racecar\"\nOutput: "
                   "\"racecar\""),
    ("ru", "list", "Примеры:\n\nВход: «абв»\nВыход: «вба»\n\nВход: «привет»\nВыход: «тевирп»\n\nВход: «а»\n"
                   "Выход: «а»\n\nВход: «шалаш»\nВыход: «шалаш»"),
    ("en", "poem", "The chorus goes twice at the end:\n\nSing it loud and sing it clear,\nThe summer's here, "
                   "the summer's here!\nSing it loud and sing it clear,\nThe summer's here, the summer's "
                   "here!"),
    ("ru", "poem", "Припев повторяется дважды:\n\nМы едем, едем, едем в далёкие края,\nХорошие соседи, "
                   "счастливые друзья.\nМы едем, едем, едем в далёкие края,\nХорошие соседи, счастливые "
                   "друзья."),
    ("en", "poem", "A mantra often used in meditation is \"Om mani padme hum\". It is chanted again and again:\n\n"
                   "Om mani padme hum,\nOm mani padme hum,\nOm mani padme hum.\n\nEach repetition is said on one "
                   "breath."),
    ("ru", "poem", "Эх, дороги...\n\nЭх, дороги, пыль да туман,\nХолода, тревоги да степной бурьян.\n\nА "
                   "дороги, дороги, дороги,\nВсё дороги да дороги без конца."),
    ("en", "prose", "Dear customer,\n\nThank you for your order. Your order number is 48213. Your order will "
                    "be shipped within two business days. You will receive an email when your order ships.\n\n"
                    "Best regards,\nThe Shop Team"),
    ("ru", "prose", "Уважаемый клиент!\n\nСпасибо за заказ. Номер вашего заказа — 48213. Ваш заказ будет "
                    "отправлен в течение двух рабочих дней. Когда заказ будет отправлен, вы получите письмо.\n\n"
                    "С уважением,\nкоманда магазина"),
    ("en", "prose", "In Morse code, SOS is ... --- ... and it is sent as one unbroken sequence: ...---...\n\n"
                    "A ship in distress would repeat it: ...---... ...---... ...---..."),
    ("ru", "prose", "Да, да и ещё раз да! Это именно то, что нужно. Берите, не пожалеете."),
    ("en", "prose", "## Summary\n\n> The results are good.\n\n## Details\n\n> The results are good, but the "
                    "sample is small.\n\n## Next steps\n\n> Collect more data."),
    ("ru", "prose", "### Итог\n\n> Результаты хорошие.\n\n### Подробности\n\n> Результаты хорошие, но выборка "
                    "маленькая.\n\n### Что дальше\n\n> Собрать больше данных."),
    ("en", "list", "Daily standup notes:\n\n- Alice: working on the login page, no blockers.\n- Bob: working on "
                   "the login page, no blockers.\n- Carol: working on the billing page, no blockers.\n- Dave: "
                   "working on the billing page, no blockers.\n- Eve: on vacation."),
    ("ru", "list", "Заметки стендапа:\n\n- Аня: делает страницу входа, блокеров нет.\n- Боря: делает страницу "
                   "входа, блокеров нет.\n- Вера: делает оплату, блокеров нет.\n- Гоша: делает оплату, блокеров "
                   "нет.\n- Дима: в отпуске."),
    ("en", "prose", "Wait, wait, wait. Before you delete anything, make a backup. Seriously: a backup first, "
                    "then the cleanup."),
    ("ru", "prose", "Тише, тише, не торопитесь. Сначала резервная копия, потом удаление. Именно в таком "
                    "порядке."),
    ("en", "poem", "Row, row, row your boat,\nGently down the stream.\nMerrily, merrily, merrily, merrily,\nLife "
                   "is but a dream."),
    ("en", "poem", "Here are the lyrics, with the chorus sung twice at the end as on the record:\n\nThe city lights "
                   "are fading, the morning's coming soon,\nWe danced across the rooftops beneath a paper moon.\n\n"
                   "So hold on, hold on, the night is almost through,\nHold on, hold on, I'm coming home to you,\n"
                   "So hold on, hold on, the night is almost through,\nHold on, hold on, I'm coming home to you."),
    ("ru", "poem", "Текст песни, припев в конце поётся два раза подряд:\n\nГорят огни вокзала, и поезд ждёт "
                   "меня,\nЯ помню, как ты ждала у старого окна.\n\nИ снова, и снова мы будем вдвоём,\nИ снова, "
                   "и снова споём о своём,\nИ снова, и снова мы будем вдвоём,\nИ снова, и снова споём о своём."),
    ("en", "poem", "Chorus (sing it twice):\n\nWe'll carry the lantern over the hill,\nWe'll carry it "
                   "gently, we'll carry it still,\nAnd when the dawn comes and the valley is bright,\nWe'll set it "
                   "down softly and say goodnight.\nWe'll carry the lantern over the hill,\nWe'll carry it "
                   "gently, we'll carry it still,\nAnd when the dawn comes and the valley is bright,\nWe'll set it "
                   "down softly and say goodnight."),
    ("ru", "poem", "Припев (два раза):\n\nНад рекою туман, над рекою рассвет,\nИ на тысячу вёрст никого "
                   "больше нет,\nТолько ветер да я, только песня моя,\nИ родная земля, и родная земля.\nНад рекою "
                   "туман, над рекою рассвет,\nИ на тысячу вёрст никого больше нет,\nТолько ветер да я, только "
                   "песня моя,\nИ родная земля, и родная земля."),
    ("en", "poem", "Final chorus, twice:\n\nOh, the river runs and the river bends,\nAnd every road "
                   "comes home again,\nOh, the river runs and the river bends,\nAnd every road comes home again."),
    ("ru", "poem", "Припев дважды:\n\nА я иду, шагаю по Москве,\nИ я пройти ещё смогу\nА я иду, шагаю по "
                   "Москве,\nИ я пройти ещё смогу."),
    ("ru", "poem", "Жили у бабуси\nДва весёлых гуся:\nОдин серый, другой белый —\nДва весёлых "
                   "гуся.\n\nВытянули шеи —\nУ кого длиннее!\nОдин серый, другой белый,\nУ кого длиннее!"),
]


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def clean_answers(rng: random.Random) -> list[dict[str, str]]:
    """All clean answers: hand-written ones, then the assembled tables, code answers and schedules."""
    out: list[dict[str, str]] = []
    out += [{"lang": "en", "kind": "prose", "text": t} for t in PROSE_EN]
    out += [{"lang": "ru", "kind": "prose", "text": t} for t in PROSE_RU]
    out += [{"lang": lang, "kind": "list", "text": t} for lang, t in LISTS]
    out += [{"lang": lang, "kind": "poem", "text": t} for lang, t in POEMS]
    out += [{"lang": lang, "kind": kind, "text": t} for lang, kind, t in TRICKY]
    # Prose answers in pairs make longer, multi-paragraph answers of the same language; a few long reports too.
    for lang, prose in (("en", PROSE_EN), ("ru", PROSE_RU)):
        for _ in range(12):
            a, b = rng.sample(prose, 2)
            out.append({"lang": lang, "kind": "prose", "text": a + "\n\n" + b})
        heading = "Part" if lang == "en" else "Часть"
        for _ in range(4):
            parts = rng.sample(prose, 6)
            out.append({"lang": lang, "kind": "prose",
                        "text": "\n\n".join(f"### {heading} {i}\n\n{part}" for i, part in enumerate(parts, 1))})
    for lang, intro, header, rows in TABLE_DATA:
        for outro in TABLE_OUTROS[lang][:3]:
            chosen = rows if not outro else rows[: max(3, len(rows) - rng.randint(0, 2))]
            out.append({"lang": lang, "kind": "table", "text": intro + "\n\n" + _table(header, chosen) + outro})
    for lang in ("en", "ru"):
        for index, (language, code) in enumerate(CODE_SNIPPETS):
            intro = CODE_INTROS[lang][index % len(CODE_INTROS[lang])]
            outro = CODE_OUTROS[lang][(index + (lang == "ru")) % len(CODE_OUTROS[lang])]
            out.append({"lang": lang, "kind": "code", "text": f"{intro}\n\n```{language}\n{code}\n```{outro}"})
        for weeks in (1, 2, 3):
            lines = []
            for week in range(weeks):
                title = f"Week {week + 1}" if lang == "en" else f"Неделя {week + 1}"
                lines.append(f"**{title}**")
                lines += [f"- {day}: {WORKOUTS[lang][(i + week) % 7]}" for i, day in enumerate(DAYS[lang])]
                lines.append("")
            intro = "Here's a training plan:" if lang == "en" else "Вот план тренировок:"
            out.append({"lang": lang, "kind": "list", "text": intro + "\n\n" + "\n".join(lines).strip()})
    return out


# ------------------------------------------------------------------ synthetic loops

WORDS = {"en": ["the", "yes", "and", "very", "okay", "no"], "ru": ["да", "и", "очень", "нет", "это", "так"]}


def _sentences(text: str) -> list[str]:
    parts, current = [], ""
    for char in text:
        current += char
        if char in ".!?" and len(current.strip()) > 20:
            parts.append(current.strip() + " ")
            current = ""
    return parts


def loops(rng: random.Random, clean: list[dict[str, str]]) -> list[dict[str, object]]:
    """Synthetic loops built from the clean answers' openings and sentences."""
    out: list[dict[str, object]] = []
    prose = {lang: [c["text"] for c in clean if c["lang"] == lang and c["kind"] == "prose"] for lang in ("en", "ru")}
    for lang in ("en", "ru"):
        for i in range(100):
            source = rng.choice(prose[lang])
            sentences = _sentences(source) or [source + " "]
            opening = "" if i % 5 == 0 else "".join(sentences[: rng.randint(1, max(1, len(sentences) - 1))])
            # Pairs share a kind, so both halves (even and odd n) get every kind.
            kind = ["word", "phrase", "sentence", "sentence", "paragraph", "list"][(i // 2) % 6]
            if kind == "word":
                unit = rng.choice(WORDS[lang]) + rng.choice([" ", ", ", " "])
            elif kind == "phrase":
                words = rng.choice(sentences).split()
                start = rng.randint(0, max(0, len(words) - 3))
                unit = " ".join(words[start:start + rng.randint(2, 4)]) + " "
            elif kind == "sentence":
                unit = rng.choice(sentences)
            elif kind == "paragraph":
                unit = "".join(rng.sample(sentences, min(len(sentences), rng.randint(2, 4)))).strip() + "\n\n"
            else:
                item = rng.choice(sentences).strip()
                lead = "Steps:\n" if lang == "en" else "Шаги:\n"
                opening = (opening + "\n\n" if opening else "") + lead + "1. " + item + "\n"
                text, number = opening, 2
                loop_start = len(text)
                while len(text) < loop_start + 1500:
                    text += f"{number}. {item}\n"
                    number += 1
                out.append({"lang": lang, "kind": kind, "text": text, "loop_start": loop_start})
                continue
            if opening and kind != "word":
                opening += "\n\n" if kind == "paragraph" else ""
            text = opening + unit
            loop_start, period = len(text), len(unit)
            while len(text) < loop_start + max(1500, 3 * period):
                text += unit
            # Where the text really starts repeating: the opening may already end like the unit.
            while loop_start > period and text[loop_start - 1] == text[loop_start - 1 - period]:
                loop_start -= 1
            out.append({"lang": lang, "kind": kind, "text": text, "loop_start": loop_start})
    return out


def main() -> None:
    rng = random.Random(20261130)
    clean = clean_answers(rng)
    synthetic = loops(rng, clean)
    for name, records in (("answers_clean.jsonl", clean), ("loops_synthetic.jsonl", synthetic)):
        with open(HERE / name, "w", encoding="utf-8") as f:
            for n, record in enumerate(records):
                f.write(json.dumps({"n": n, **record}, ensure_ascii=False) + "\n")
        print(f"{name}: {len(records)} records")


if __name__ == "__main__":
    main()
