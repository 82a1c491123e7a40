"""What a browser would submit from a rendered HTML form: its initial values, read from the page."""

from html.parser import HTMLParser

# Inputs a browser never sends by themselves: a button is sent only when it is the one pressed.
_BUTTON_TYPES = {"submit", "button", "reset", "image"}


class _FormReader(HTMLParser):
    """Collects the successful controls of one form, in document order."""

    def __init__(self, form_id: str):
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.in_form = False
        self.found = False
        self.fields: list[tuple[str, str]] = []
        self.buttons: dict[str, str] = {}
        self._textarea: tuple[str, list[str]] | None = None
        self._select: tuple[str, list[tuple[str, bool]], bool] | None = None
        self._option: tuple[str | None, bool, list[str]] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "form" and attributes.get("id") == self.form_id:
            self.in_form = self.found = True
            return
        if not self.in_form or "disabled" in attributes:
            return
        name = attributes.get("name")
        if tag == "input" and name:
            kind = (attributes.get("type") or "text").lower()
            if kind in _BUTTON_TYPES:
                self.buttons[name] = attributes.get("value") or ""
            elif kind in ("checkbox", "radio"):
                if "checked" in attributes:
                    self.fields.append((name, attributes.get("value") or "on"))
            elif kind != "file":
                self.fields.append((name, attributes.get("value") or ""))
        elif tag == "button" and name:
            self.buttons[name] = attributes.get("value") or ""
        elif tag == "textarea" and name:
            self._textarea = (name, [])
        elif tag == "select" and name:
            self._select = (name, [], "multiple" in attributes)
        elif tag == "option" and self._select is not None:
            self._option = (attributes.get("value"), "selected" in attributes, [])

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea[1].append(data)
        if self._option is not None:
            self._option[2].append(data)

    def handle_endtag(self, tag):
        if tag == "form" and self.in_form:
            self.in_form = False
        elif tag == "textarea" and self._textarea is not None:
            name, parts = self._textarea
            text = "".join(parts)
            # HTML drops one newline right after <textarea>; Django's widget writes one there.
            if text.startswith("\r\n"):
                text = text[2:]
            elif text.startswith("\n"):
                text = text[1:]
            self.fields.append((name, text))
            self._textarea = None
        elif tag == "option" and self._option is not None:
            self._close_option()
        elif tag == "select" and self._select is not None:
            if self._option is not None:
                self._close_option()
            name, options, multiple = self._select
            chosen = [value for value, selected in options if selected]
            if not chosen and options and not multiple:
                chosen = [options[0][0]]  # a single select with nothing selected sends its first
            self.fields.extend((name, value) for value in (chosen if multiple else chosen[-1:]))
            self._select = None

    def _close_option(self):
        value, selected, text = self._option
        self._select[1].append((value if value is not None else "".join(text).strip(), selected))
        self._option = None


def rendered_form_data(page: str, *, form_id: str, pressed: str | None = None) -> dict:
    """The fields of the form `form_id` as a browser submits them untouched, `pressed` its button.

    Returns a dict of lists, as Django's test client posts a field with several values.
    """
    reader = _FormReader(form_id)
    reader.feed(page)
    reader.close()
    assert reader.found, f"no form with id {form_id!r} on the page"
    data: dict[str, list[str]] = {}
    for name, value in reader.fields:
        data.setdefault(name, []).append(value)
    if pressed is not None:
        assert pressed in reader.buttons, f"no button named {pressed!r} in the form"
        data[pressed] = [reader.buttons[pressed]]
    return data
