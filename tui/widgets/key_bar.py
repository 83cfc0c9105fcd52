"""The key bar: the keys that apply right now, drawn as one line of text.

Textual's Footer remounts a widget per key on every focus change, which made a tab switch
restyle the whole screen several times; the console changes focus on almost every key, so
this bar renders the same information (disabled keys dimmed, hidden ones absent) as a single
widget that only re-renders. A key a view would only explain (``ExplainsIdleKeys``) is dimmed.
"""

from __future__ import annotations

from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget

from tui.widgets.idle_keys import ExplainsIdleKeys


class KeyBar(Widget):
    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if self.is_attached and screen is self.screen:
            self.refresh()

    def render(self) -> Content:
        seen: set[str] = set()
        parts: list[Content] = []
        for node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if not binding.show or binding.action in seen:
                continue
            seen.add(binding.action)
            if enabled and isinstance(node, ExplainsIdleKeys):
                # a key with nothing to act on is dimmed here, and says why when pressed
                enabled = node.idle_reason(binding.action.split("(", 1)[0]) is None
            key = Content.styled(
                f" {self.app.get_key_display(binding)} ", "bold $footer-key-foreground" if enabled else "$text-disabled"
            )
            label = Content.styled(
                binding.description, "$footer-description-foreground" if enabled else "$text-disabled"
            )
            parts.append(Content.assemble(key, label))
        parts.append(Content.assemble(Content.styled(" ^p ", "bold $footer-key-foreground"), "palette"))
        return Content(" ").join(parts)
