"""What one command works with, bound once by the CLI and handed to the stage: the
settings, the runner and the environment, and — made on first use, then shared — the
registry client, the signer, the release store (logged in) and the Docker engine.

No stage builds its own registry client or opens its own release store: a command that
reads the registry twice reads it through one client with one login."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from dcforge.core.settings import Settings, SigningConfig
from dcforge.infra import signing
from dcforge.infra.release_store import Releases
from dcforge.infra.runner import Runner
from dcforge.infra.tools.cosign import Cosign, Signer
from dcforge.infra.tools.docker import Engine
from dcforge.infra.tools.registry import Registry


@dataclass
class Context:
    settings: Settings
    runner: Runner
    env: Mapping[str, str] = field(repr=False)  # credentials: never in a repr

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.runner, self.settings.insecure_hosts)

    @cached_property
    def signer(self) -> Signer:
        return signing.signer(self.settings)

    @cached_property
    def cosign(self) -> Cosign:
        return Cosign(self.runner, self.signer, self.registry, signing.cosign_env(self.env))

    @cached_property
    def releases(self) -> Releases:
        """The release store, logged in to the registries once: every tool (oras, skopeo,
        cosign, Trivy, syft) reads the one credential store the login writes."""
        store = Releases(self.settings, self.registry, self.cosign, self.env)
        store.login()
        return store

    @cached_property
    def engine(self) -> Engine:
        return Engine(self.runner)

    def with_settings(self, settings: Settings) -> Context:
        """A context with other settings (a second build into another folder, say), this
        one's runner and environment."""
        return Context(settings, self.runner, self.env)

    def elsewhere(self, registry: str, signing: SigningConfig | None = None) -> Context:
        """A context for another registry (and signer), with this one's runner and
        environment: a consumer's check of an image this project's settings do not name."""
        changed = replace(self.settings, registry=registry)
        changed = replace(changed, signing=signing) if signing is not None else changed
        return Context(changed, self.runner, self.env)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.close()
