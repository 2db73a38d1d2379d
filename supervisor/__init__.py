"""supervisor: Erlang/OTP-style supervision trees for `actors`."""

__all__: list[str] = []
