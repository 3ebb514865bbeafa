"""The settings file: TOML whose keys are the settings' field names (`max_batch_tokens = 8192`).

pydantic-settings' `TomlConfigSettingsSource` reads it; this source decides which file (the
`config` setting, which the flags and the environment give before it is read), and refuses what
the built-in source would let through silently: a key that is no setting (a typo must not be
ignored) and a value that does not validate, both named with the file.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource, TomlConfigSettingsSource

CONFIG_FIELD = "config"  # the setting that names the file (SEMSEARCH_CONFIG, --config)


class ConfigFileError(Exception):
    """The settings file is missing, unreadable, not TOML, or names an unknown setting or a bad
    value (the command line reports it as a usage error)."""


class ConfigFileSource(PydanticBaseSettingsSource):
    """Ranked below the flags and the environment, whose state names the file (`config`)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole file is read at once, in __call__

    def __call__(self) -> dict[str, Any]:
        named = self.current_state.get(CONFIG_FIELD)
        if not named:
            return {}
        path = Path(named).expanduser()
        if not path.is_file():
            raise ConfigFileError(f"config file {path} does not exist or is not a file")
        try:
            source = TomlConfigSettingsSource(self.settings_cls, toml_file=path)
        except OSError as exc:
            raise ConfigFileError(f"cannot read config file {path}: {exc.strerror}") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigFileError(f"config file {path} is not valid TOML: {exc}") from exc
        self._check(path, source.toml_data)
        return source()

    def _check(self, path: Path, values: dict[str, Any]) -> None:
        fields = self.settings_cls.model_fields
        if CONFIG_FIELD in values:
            raise ConfigFileError(f"config file {path}: `{CONFIG_FIELD}` cannot name another file")
        unknown = [key for key in values if key not in fields]
        if unknown:
            hints = []
            for key in unknown:
                near = difflib.get_close_matches(key.lower(), fields, n=1)
                hints.append(f"`{key}`" + (f" (did you mean `{near[0]}`?)" if near else ""))
            raise ConfigFileError(
                f"config file {path}: unknown setting {', '.join(hints)}; keys are the settings' "
                "names in lower case, SEMSEARCH_<NAME> without the prefix"
            )
        # The file's values alone (no other source: what BaseModel.__init__ does, given an
        # instance), so that a bad one is reported with its key and this file. A setting the file
        # does not hold can fail only by a rule across settings (store = "qdrant" needs a URL,
        # which the environment may give): that is checked once every source is in.
        cls = self.settings_cls
        try:
            cls.__pydantic_validator__.validate_python(values, self_instance=cls.__new__(cls))
        except ValidationError as exc:
            errors = [e for e in exc.errors() if e["loc"] and e["loc"][0] in values]
            if errors:
                problems = "; ".join(
                    f"`{'.'.join(map(str, error['loc']))}`: {error['msg']}" for error in errors
                )
                raise ConfigFileError(f"config file {path}: {problems}") from exc
