"""Everything the display says, per language. Uyghur text is in its Arabic script (UEY).

Keys: one per UI state, plus "ticket" (label before the ticket number) and "levels" (button names,
index 0 = score 1 ... index 4 = score 5).
"""

TEXT = {
    "zh-Hans": {
        "idle": "欢迎光临",
        "prompt": "请对本次服务进行评价",
        "thanks": "感谢您的评价",
        "already": "您已评价过本次服务",
        "nosession": "请在办理业务后评价",
        "error": "设备故障,请联系工作人员",
        "offline": "网络连接中断",
        "full": "暂停评价,请联系工作人员",
        "identify": "设备识别中",
        "ticket": "票号",
        "levels": ("非常不满意", "不满意", "基本满意", "满意", "非常满意"),
    },
    "zh-Hant": {
        "idle": "歡迎光臨",
        "prompt": "請對本次服務進行評價",
        "thanks": "感謝您的評價",
        "already": "您已評價過本次服務",
        "nosession": "請在辦理業務後評價",
        "error": "設備故障,請聯繫工作人員",
        "offline": "網絡連接中斷",
        "full": "暫停評價,請聯繫工作人員",
        "identify": "設備識別中",
        "ticket": "票號",
        "levels": ("非常不滿意", "不滿意", "基本滿意", "滿意", "非常滿意"),
    },
    "en": {
        "idle": "Welcome",
        "prompt": "Please rate our service",
        "thanks": "Thank you for your rating",
        "already": "You have already rated this service",
        "nosession": "Please rate after your service",
        "error": "Device fault, please ask staff",
        "offline": "Network offline",
        "full": "Rating paused, please ask staff",
        "identify": "Identifying this device",
        "ticket": "Ticket",
        "levels": ("Very dissatisfied", "Dissatisfied", "Basically satisfied", "Satisfied",
                   "Very satisfied"),
    },
    "ug": {
        "idle": "خۇش كەلدىڭىز",
        "prompt": "مۇلازىمىتىمىزگە باھا بېرىڭ",
        "thanks": "باھايىڭىزغا رەھمەت",
        "already": "بۇ مۇلازىمەتكە باھا بېرىپ بولدىڭىز",
        "nosession": "مۇلازىمەتتىن كېيىن باھا بېرىڭ",
        "error": "ئۈسكۈنىدە كاشىلا بار، خادىملاردىن سوراڭ",
        "offline": "تور ئۈزۈلدى",
        "full": "باھالاش توختىتىلدى، خادىملاردىن سوراڭ",
        "identify": "ئۈسكۈنە تونۇلۇۋاتىدۇ",
        "ticket": "نومۇر",
        "levels": ("ناھايىتى نارازى", "نارازى", "ئاساسەن رازى", "رازى", "ناھايىتى رازى"),
    },
}


def table(lang):
    """The strings of one language (unknown language or missing key: zh-Hans). The device keeps
    only this dict: it loads this module with `flashfs.run_cold` (docs/firmware.md, "Memory")."""
    res = dict(TEXT["zh-Hans"])
    res.update(TEXT.get(lang, {}))
    del res["levels"]  # for a display that labels the buttons; this one does not
    return res
