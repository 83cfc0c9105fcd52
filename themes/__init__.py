"""The console's themes: a dark, a light and a high-contrast one.

Status colours are the theme's ``success``/``warning``/``error`` variables plus the custom
``status-*`` variables below, so a view never hard-codes a colour and every theme can make
its own contrast choices. Views always pair a status colour with text or an icon, so the
meaning survives a monochrome terminal and colour-blind readers.
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

CSS_PATH = Path(__file__).with_name("console.tcss")

CLEANROOM_DARK = Theme(
    name="cleanroom-dark",
    primary="#4C9BE8",
    secondary="#2D5F8B",
    accent="#F2A541",
    warning="#F2A541",
    error="#E5535B",
    success="#56C271",
    foreground="#DDE3EA",
    background="#12161C",
    surface="#1A2029",
    panel="#222A35",
    dark=True,
    variables={
        "status-open": "#4C9BE8",
        "status-muted": "#7C8794",
        "footer-key-foreground": "#F2A541",
    },
)

CLEANROOM_LIGHT = Theme(
    name="cleanroom-light",
    primary="#1F5FA8",
    secondary="#4A7FB5",
    accent="#A65E00",
    warning="#A65E00",
    error="#B3261E",
    success="#1E7B34",
    foreground="#1B1F24",
    background="#F7F8FA",
    surface="#FFFFFF",
    panel="#E6EAF0",
    dark=False,
    variables={
        "status-open": "#1F5FA8",
        "status-muted": "#5A6470",
        "footer-key-foreground": "#A65E00",
    },
)

# Pure black and white with saturated status colours: WCAG AAA contrast for body text.
CLEANROOM_HIGH_CONTRAST = Theme(
    name="cleanroom-high-contrast",
    primary="#FFFF00",
    secondary="#00FFFF",
    accent="#FF00FF",
    warning="#FFFF00",
    error="#FF5555",
    success="#00FF00",
    foreground="#FFFFFF",
    background="#000000",
    surface="#000000",
    panel="#000000",
    boost="#333333",
    dark=True,
    luminosity_spread=0.0,
    text_alpha=1.0,
    variables={
        "status-open": "#00FFFF",
        "status-muted": "#FFFFFF",
        "footer-key-foreground": "#FFFF00",
        "block-cursor-background": "#FFFF00",
        "block-cursor-foreground": "#000000",
    },
)

THEMES: dict[str, Theme] = {theme.name: theme for theme in (CLEANROOM_DARK, CLEANROOM_LIGHT, CLEANROOM_HIGH_CONTRAST)}
DEFAULT_THEME = CLEANROOM_DARK.name

# Short names accepted by `cleanroom console --theme`.
ALIASES: dict[str, str] = {
    "dark": "cleanroom-dark",
    "light": "cleanroom-light",
    "high-contrast": "cleanroom-high-contrast",
}
