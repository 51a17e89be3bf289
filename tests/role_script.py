"""A scripted `ask(role, request)` for playing dialogue tasks directly in tests: one script per role,
every call logged."""
from harness.contract import ModelOutput


class Script:
    """`ask(role, request)` answering from one script per role; logs every call."""

    def __init__(self, **scripts):
        self.scripts = {role: list(lines) for role, lines in scripts.items()}
        self.log = []

    def __call__(self, role, request):
        self.log.append((role, request))
        assert self.scripts.get(role), f"unexpected call #{len(self.log)} to role '{role}'"
        return ModelOutput(choices=[self.scripts[role].pop(0)])

    @property
    def roles(self):
        return [role for role, _ in self.log]

    def requests(self, role):
        return [request for r, request in self.log if r == role]

    def used_up(self):
        return all(not lines for lines in self.scripts.values())
