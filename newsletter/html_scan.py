"""What the built HTML part holds for `check`: its images, its links, its text, and the text a spam filter
takes for hidden.

Hidden text is judged as SpamAssassin judges it for HTML_FONT_LOW_CONTRAST
(Mail::SpamAssassin::HTML, 4.0: text_style and html_font_invisible): each
piece of text has the colour and background of the innermost of its elements
that set them, starting from black on white; only the `style` attribute of
table, tr, td, th, span, p, div and a, `color` of font and `text` of body
count (a `bgcolor` attribute or body's `style` does not, so an email's page
colour is white to it); text whose colour is the background's, or within a
brightness-weighted distance of 12 of it, is low contrast. That it is also
`display: none` does not matter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html.parser import HTMLParser

_STYLED = {"body", "font", "table", "tr", "th", "td", "big", "small", "basefont", "marquee", "span", "p", "div", "a"}
_STYLE_ATTRIBUTE = {"table", "tr", "td", "th", "span", "p", "div", "a"}
_NOT_TEXT = {"style", "script", "head"}
# SpamAssassin's table holds CSS's names; these are HTML 4's sixteen and the light ones a footer or preheader uses.
_NAMED = {
    "aqua": "#00ffff", "black": "#000000", "blue": "#0000ff", "fuchsia": "#ff00ff", "gray": "#808080",
    "green": "#008000", "lime": "#00ff00", "maroon": "#800000", "navy": "#000080", "olive": "#808000",
    "purple": "#800080", "red": "#ff0000", "silver": "#c0c0c0", "teal": "#008080", "white": "#ffffff",
    "yellow": "#ffff00", "grey": "#808080", "whitesmoke": "#f5f5f5", "gainsboro": "#dcdcdc", "snow": "#fffafa",
    "ivory": "#fffff0", "lightgray": "#d3d3d3", "lightgrey": "#d3d3d3", "ghostwhite": "#f8f8ff",
}  # fmt: skip
_COLOUR = re.compile(r"^\s*(background-)?color:\s*(.+?)\s*$", re.I)
_BACKGROUND = re.compile(r"^\s*background:\s*(.+?)\s*$")  # SpamAssassin matches this one case-sensitively
_RGB = re.compile(r"rgb\(\s*(\d+)(%?)\s*,\s*(\d+)%?\s*,\s*(\d+)%?\s*\)")


@dataclass(frozen=True)
class Image:
    src: str
    alt: str | None
    width: str | None
    height: str | None


@dataclass(frozen=True)
class LowContrast:
    text: str
    colour: str
    background: str


@dataclass
class Scan:
    images: list[Image] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # every <a href>, in order
    text: str = ""  # the text of the body, whitespace collapsed to single spaces
    low_contrast: list[LowContrast] = field(default_factory=list)


def scan(html: str) -> Scan:
    parser = _Parser()
    parser.feed(html)
    parser.close()
    found = parser.found
    found.text = " ".join("".join(parser.words).split())
    return found


def colour(value: str) -> str | None:
    """`value` as #rrggbb the way SpamAssassin reads it (name_to_rgb), or None where it cannot."""
    value = value.strip().lower()
    if value in _NAMED:
        return _NAMED[value]
    rgb = _RGB.search(value)
    if rgb:
        scale = 255 / 100 if rgb[2] else 1
        return "#" + "".join(f"{min(255, int(int(rgb[i]) * scale)):02x}" for i in (1, 3, 4))
    if not re.fullmatch(r"#[0-9a-f]*", value):
        return None
    digits = value[1:]
    if len(digits) > 6:
        digits = digits[:6]
    elif 3 < len(digits) < 6:
        digits = digits[:3]
    digits += "0" * (-len(digits) % 3)
    if len(digits) == 3:
        digits = "".join(c * 2 for c in digits)
    return "#" + digits if digits else None


def low_contrast(fg: str, bg: str) -> bool:
    """SpamAssassin's test: the same colour, or nearly (a distance weighted by each channel's brightness)."""
    (r1, g1, b1), (r2, g2, b2) = (_channels(fg), _channels(bg))
    distance = ((0.2126 * (r1 - r2)) ** 2 + (0.7152 * (g1 - g2)) ** 2 + (0.0722 * (b1 - b2)) ** 2) ** 0.5
    return fg == bg or distance < 12


def _channels(hex_colour: str) -> tuple[int, int, int]:
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


@dataclass
class _Style:
    tag: str
    fg: str | None  # None: a colour SpamAssassin cannot read (it skips the test)
    bg: str | None


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = Scan()
        self.words: list[str] = []
        self.styles = [_Style("default", "#000000", "#ffffff")]
        self.skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag in _NOT_TEXT:
            self.skipping.append(tag)
        elif tag == "img":
            get = attributes.get
            self.found.images.append(Image(get("src", ""), get("alt"), get("width"), get("height")))
        elif tag == "a" and "href" in attributes:
            self.found.links.append(attributes["href"])
        if tag in ("br", "p", "div", "td", "th", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
            self.words.append(" ")
        if tag in _STYLED:
            self._open_style(tag, attributes)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()
        if tag in ("p", "div", "td", "th", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"):
            self.words.append(" ")
        if tag in _STYLED and tag != "body" and any(s.tag == tag for s in self.styles):
            while self.styles.pop().tag != tag:
                pass

    def handle_data(self, data: str) -> None:
        if self.skipping or not data.strip():
            if not self.skipping:
                self.words.append(data)
            return
        self.words.append(data)
        style = self.styles[-1]
        if style.fg and style.bg and low_contrast(style.fg, style.bg):
            self.found.low_contrast.append(LowContrast(" ".join(data.split()), style.fg, style.bg))

    def _open_style(self, tag: str, attributes: dict[str, str]) -> None:
        if tag in ("td", "tr"):  # an unclosed cell or row ends where the next begins
            closes = {"td": ("font", "td"), "tr": ("font", "td", "tr")}[tag]
            if any(s.tag == tag for s in self.styles):
                while len(self.styles) > 1 and self.styles[-1].tag in closes:
                    self.styles.pop()
        parent = self.styles[-1]
        new = _Style(tag, parent.fg, parent.bg)
        if (tag == "font" and "color" in attributes) or (tag == "body" and "text" in attributes):
            new.fg = colour(attributes["color" if tag == "font" else "text"])
        if tag in _STYLE_ATTRIBUTE and "style" in attributes:
            for declaration in attributes["style"].split(";"):
                self._declare(new, parent, declaration)
        self.styles.append(new)

    @staticmethod
    def _declare(new: _Style, parent: _Style, declaration: str) -> None:
        found = _COLOUR.match(declaration)
        if found:
            value = re.sub(r"\s*!\s*important$", "", found[2].lower())
            if value == "inherit":
                return
            read = "transparent" if value == "transparent" else colour(value)
            if found[1]:
                new.bg = parent.bg if read == "transparent" else read
            else:
                new.fg = new.bg if read == "transparent" else read
            return
        background = _BACKGROUND.match(declaration)
        if background:
            # The colour of a `background` shorthand is in its last layer; rgb(...) holds commas and spaces.
            last = re.split(r",(?![^(]*\))", background[1].lower())[-1]
            for value in re.findall(r"[\w-]+\([^)]*\)|[^\s,]+", last):
                read = colour(value)
                if read:
                    new.bg = read
                    break
