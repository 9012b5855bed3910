"""The one YAML parser robench reads configuration with: safe, and strict where plain YAML is silent.

Plain ``yaml.safe_load`` accepts two things that hurt a benchmark reading strangers' files (issue #24):

- **Duplicate keys.** A card with two ``weights:`` keys loads with the second one winning, so a reviewer
  who reads the first sees other weights than the ones evaluated. Here a key repeated in one mapping is
  an error naming the key and both lines.
- **Anchors and aliases.** A few hundred bytes of nested aliases (the "billion laughs") expand into a
  structure of billions of nodes when robench merges or walks it, which runs for minutes and dies of
  memory. robench's own YAML uses neither, so both are refused before anything is built.

Errors are ``yaml.YAMLError`` subclasses carrying a line mark, so :func:`robench.core.config.read_yaml`
turns them into its one-line ``UsageError`` naming the file.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors, aliases and a key repeated within one mapping."""

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(
                None,
                None,
                f"YAML anchors and aliases (&{event.anchor}, *{event.anchor}) are refused: "
                "write the value out in full",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.setdefault(key, key_node)
                except TypeError:  # an unhashable key: SafeLoader's own error says so
                    break
                if first is not key_node:
                    raise ConstructorError(
                        None,
                        None,
                        f"duplicate key {key!r} (first at line {first.start_mark.line + 1}): "
                        "each key may appear once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep=deep)


def parse(text: str) -> Any:
    """The document in ``text``, parsed by :class:`StrictLoader` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader: no python tags
