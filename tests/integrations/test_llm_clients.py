"""The drop-in clients: the real `openai` and `anthropic` packages, pointed at a local server
on loopback that answers like the APIs (tests/integrations/llm_server.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import pickle
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import httpx2
import pytest

from spendgate import BudgetExceededError, Gate, ValidationError
from spendgate.config import parse
from spendgate.llm import wrap
from spendgate.testing import FrozenClock

from .llm_server import LLMServer, wait_until

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

M = Decimal("0.000001")  # per token, from "N/1M"
RATES = {  # model: (input, output, cached input, cache write, reasoning), per million tokens
    "gpt-test": (1, 4, Decimal("0.5"), 1, None),
    "think-test": (1, 4, Decimal("0.5"), 1, 8),
    "slow-test": (1, 4, Decimal("0.5"), 1, None),
    "bad-request": (1, 4, Decimal("0.5"), 1, None),
    "bad-usage": (1, 4, Decimal("0.5"), 1, None),
    "claude-test": (3, 15, Decimal("0.3"), Decimal("3.75"), None),
    "tier-test": (1, 4, Decimal("0.5"), 1, None),
    "claude-geo": (3, 15, Decimal("0.3"), Decimal("3.75"), None),
    "eu-test": (1, 4, Decimal("0.5"), 1, None),
}
TIERS = {  # a model's rates in the service tiers it prices apart
    "tier-test": {
        "flex": (Decimal("0.5"), 2, Decimal("0.25"), Decimal("0.5"), None),
        "priority": (2, 8, 1, 2, None),
    },
    "claude-geo": {  # Anthropic's multipliers: 1.1 kept in the US, 2 in fast mode
        "us": (Decimal("3.3"), Decimal("16.5"), Decimal("0.33"), Decimal("4.125"), None),
        "fast_mode": (6, 30, Decimal("0.6"), Decimal("7.5"), None),
        "fast_mode_us": (Decimal("6.6"), 33, Decimal("0.66"), Decimal("8.25"), None),
    },
    "eu-test": {  # OpenAI's regional processing: 1.1 on eu.api.openai.com, in every tier
        "priority": (2, 8, 1, 2, None),
        "eu": (Decimal("1.1"), Decimal("4.4"), Decimal("0.55"), Decimal("1.1"), None),
        "priority_eu": (Decimal("2.2"), Decimal("8.8"), Decimal("1.1"), Decimal("2.2"), None),
        "regional": (Decimal("1.1"), Decimal("4.4"), Decimal("0.55"), Decimal("1.1"), None),
    },
}


def sources() -> dict[str, Any]:
    out = {}
    for model, (inp, out_, cached, write, reasoning) in RATES.items():
        price = {
            "input_token": f"{inp}/1M",
            "output_token": f"{out_}/1M",
            "cached_input_token": f"{cached}/1M",
            "cache_write_token": f"{write}/1M",
        }
        if reasoning is not None:
            price["reasoning_token"] = f"{reasoning}/1M"
        for tier, rates in TIERS.get(model, {}).items():
            kinds = ("input_token", "output_token", "cached_input_token", "cache_write_token")
            price |= {
                f"{tier}_{kind}": f"{rate}/1M" for kind, rate in zip(kinds, rates[:4], strict=True)
            }
        out[model] = {"price": price}
    return out


def billed(model: str, usage: dict[str, Any], tier: str = "default") -> Decimal:
    """What the server's usage in service tier `tier` costs, worked out here from the rates,
    apart from spendgate."""
    inp, out, cached, write, reasoning = TIERS.get(model, {}).get(tier, RATES[model])
    if "prompt_tokens" in usage or "input_tokens_details" in usage:
        prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
        done = usage.get("completion_tokens", usage.get("output_tokens", 0))
        hit = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        hit = hit.get("cached_tokens", 0)
        thought = (usage.get("completion_tokens_details") or {}).get("reasoning_tokens", 0)
        thought_rate = reasoning if reasoning is not None else out
        total = (prompt - hit) * inp + hit * cached + (done - thought) * out
        total += thought * thought_rate
    else:  # Anthropic's
        total = usage["input_tokens"] * inp + usage["output_tokens"] * out
        total += usage["cache_read_input_tokens"] * cached
        total += usage["cache_creation_input_tokens"] * write
    return total * M


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


def open_gate(limit: str = "100", db: str = "memory://") -> Gate:
    config = parse({"sources": sources(), "budgets": [{"name": "llm", "limit": limit}]})
    return Gate.open(db, config=config, clock=FrozenClock())


def spent(gate: Gate) -> Decimal:
    [status] = gate.status()
    assert status.reserved == 0, "no hold is left behind"
    return status.spent


def booked(gate: Gate, server: LLMServer) -> tuple[Decimal, Decimal]:
    """What the gate booked, and what the server's usage costs."""
    costs = (billed(m, u, t) for (_, m, u), t in zip(server.usages, server.tiers, strict=True))
    return spent(gate), sum(costs, Decimal(0))


def test_chat_is_booked_at_the_usage_the_server_sent(server: LLMServer) -> None:
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        assert isinstance(client, openai.OpenAI)
        reply = client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], max_tokens=50
        )
        assert reply.choices[0].message.content == "hello"
        thought = client.chat.completions.create(
            model="think-test", messages=[{"role": "user", "content": "why?"}]
        )
        assert thought.usage is not None
        assert thought.usage.completion_tokens_details
        spent_, expected = booked(gate, server)
        assert spent_ == expected > 0
        # No limit asked: the configured cap is sent, so the bound holds.
        assert server.bodies[1]["max_completion_tokens"] == 4096
        [event, _] = gate.events()
        assert event.source == "gpt-test"
        assert event.service == "bot"


def test_every_endpoint_and_anthropic(server: LLMServer) -> None:
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        client.completions.create(model="gpt-test", prompt="say hi", max_tokens=5)
        client.responses.create(model="gpt-test", input="hi", max_output_tokens=40)
        client.embeddings.create(model="gpt-test", input="embed me")
        claude = wrap(anthropic.Anthropic(api_key="k", base_url=server.url), gate, service="bot")
        assert isinstance(claude, anthropic.Anthropic)
        message = claude.messages.create(
            model="claude-test", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        assert message.content[0].text == "hello"  # type: ignore[union-attr]
        spent_, expected = booked(gate, server)
        assert spent_ == expected > 0
        assert len(gate.events()) == 4


def test_streams_are_booked_from_their_last_events(server: LLMServer) -> None:
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        chunks = list(
            client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        )
        # Usage was asked for on the caller's behalf: its chunk (with no choices) is not shown.
        assert [c.choices[0].delta.content for c in chunks] == ["hel", "lo", "!"]
        assert server.bodies[-1]["stream_options"] == {"include_usage": True}
        asked = client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        assert list(asked)[-1].usage is not None  # asked by the caller: shown
        events = client.responses.create(model="gpt-test", input="hi", stream=True)
        assert [e.type for e in events][-1] == "response.completed"
        claude = wrap(anthropic.Anthropic(api_key="k", base_url=server.url), gate, service="bot")
        with claude.messages.stream(
            model="claude-test", max_tokens=30, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert stream.get_final_text() == "hello"
        spent_, expected = booked(gate, server)
        assert len(server.usages) == 4
        assert spent_ == expected > 0


def test_a_refused_call_never_reaches_the_server(server: LLMServer) -> None:
    with open_gate(limit="0.001") as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        big = [{"role": "user", "content": "x" * 5000}]
        with pytest.raises(BudgetExceededError):
            client.chat.completions.create(model="gpt-test", messages=big, max_tokens=1000)
        with pytest.raises(BudgetExceededError):
            client.chat.completions.create(
                model="gpt-test", messages=big, max_tokens=1000, stream=True
            )
        assert server.total() == 0
        assert spent(gate) == 0


def test_what_cannot_be_priced_is_refused_before_sending(server: LLMServer) -> None:
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        with pytest.raises(ValidationError, match="service_tier"):
            client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}],
                service_tier="scale",
            )  # fmt: skip
        with pytest.raises(ValidationError, match="request"):
            client.images.generate(model="gpt-test", prompt="a cat")
        with pytest.raises(SpendgateError_, match="no-such-model"):
            client.chat.completions.create(model="no-such-model", messages=[])
        assert server.total() == 0
        with pytest.raises(ValidationError, match="client"):
            wrap(object(), gate, service="bot")


SpendgateError_ = __import__("spendgate").SpendgateError


def test_a_price_the_wrapper_cannot_bound_or_book_is_refused_before_sending(
    server: LLMServer,
) -> None:
    """Hand-written prices a call could not be held or booked by: a variant priced without
    its prompt rate (its calls' usage could not be costed), and size tiers sized by the
    output (not known before the call, so the hold could pick too cheap a tier)."""
    flat = {"input_token": "1/1M", "output_token": "2/1M"}
    sources = {
        "half-tier": {"price": {**flat, "priority_output_token": "4/1M"}},
        "by-output": {
            "price": flat,
            "size_units": ["input_token", "output_token"],
            "size_tiers": [{"above": 1000, "price": {"output_token": "20/1M"}}],
        },
    }
    config = parse({"sources": sources, "budgets": [{"name": "llm", "limit": "100"}]})
    with Gate.open("memory://", config=config, clock=FrozenClock()) as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="b")
        hi = [{"role": "user", "content": "hi"}]
        with pytest.raises(ValidationError, match="priority"):
            client.chat.completions.create(model="half-tier", messages=hi, max_tokens=5)
        with pytest.raises(ValidationError, match="sized by the prompt"):
            client.chat.completions.create(model="by-output", messages=hi, max_tokens=5)
        assert server.total() == 0


def test_a_call_is_booked_in_the_service_tier_that_served_it(server: LLMServer) -> None:
    """A call names its service tier, or takes the one its project is set to: it is booked
    at the rates of the tier the response says served it (OpenAI says so beside the usage,
    Anthropic inside it), in plain calls and streams alike."""
    hi = [{"role": "user", "content": "hi"}]
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        claude = wrap(anthropic.Anthropic(api_key="k", base_url=server.url), gate, service="bot")
        client.chat.completions.create(model="tier-test", messages=hi, service_tier="flex")
        for _ in client.chat.completions.create(
            model="tier-test", messages=hi, service_tier="priority", stream=True
        ):
            pass
        client.responses.create(model="tier-test", input="hi", service_tier="flex")
        server.project_tier = "priority"  # what `auto`, or no tier, is served in
        client.chat.completions.create(model="tier-test", messages=hi)
        claude.messages.create(model="tier-test", max_tokens=50, messages=hi)
        claude.messages.create(
            model="tier-test", max_tokens=50, messages=hi, service_tier="standard_only"
        )
        assert server.tiers == ["flex", "priority", "flex", "priority", "priority", "standard_only"]
        spent_, expected = booked(gate, server)
        assert spent_ == expected
        standard = sum((billed(m, u) for _, m, u in server.usages), Decimal(0))
        assert expected != standard  # the tiers' rates were what counted
        used = [
            {unit.split("_")[0] for unit, n in event.units.items() if n} for event in gate.events()
        ]
        tiers = [tier if len(tier) == 1 else {"standard"} for tier in used]
        assert tiers == [{"flex"}, {"priority"}, {"flex"}, {"priority"}, {"priority"}, {"standard"}]


def test_anthropic_fast_mode_and_us_region_are_booked_and_held_at_their_rates(
    server: LLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Anthropic bills a call kept in the US (`inference_geo`) at 1.1 times, and one in fast
    mode (`speed: "fast"`) at twice, as the usage reports; a call naming no region may be
    kept in the US by its workspace's default, so it is held at that rate."""
    hi = [{"role": "user", "content": "hi"}]
    with open_gate() as gate:
        claude = wrap(anthropic.Anthropic(api_key="k", base_url=server.url), gate, service="bot")
        claude.messages.create(model="claude-geo", max_tokens=50, messages=hi)
        claude.messages.create(
            model="claude-geo", max_tokens=50, messages=hi, extra_body={"speed": "fast"}
        )
        server.workspace_geo = "us"
        claude.messages.create(model="claude-geo", max_tokens=50, messages=hi)
        for _ in claude.messages.create(
            model="claude-geo", max_tokens=50, messages=hi, stream=True,
            extra_body={"speed": "fast"},
        ):  # fmt: skip
            pass
        claude.messages.create(
            model="claude-geo", max_tokens=50, messages=hi, extra_body={"inference_geo": "global"}
        )
        # A response at odds with its request is booked as it says, with a warning.
        server.forced_geo = "US"
        with caplog.at_level("WARNING", logger="spendgate"):
            claude.messages.create(
                model="claude-geo", max_tokens=50, messages=hi,
                extra_body={"inference_geo": "global"},
            )  # fmt: skip
        assert "did not ask for" in caplog.text
        server.forced_geo = None
        assert server.tiers == ["default", "fast_mode", "us", "fast_mode_us", "default", "us"]
        spent_, expected = booked(gate, server)
        assert spent_ == expected
        with pytest.raises(ValidationError, match="inference_geo"):
            claude.messages.create(
                model="claude-geo", max_tokens=50, messages=hi, extra_body={"inference_geo": "eu"}
            )
        assert server.total() == 6
    # Held at the US rate unless the request keeps the call out of the US.
    with open_gate(limit="0.0035") as gate:  # ~0.00318 at 1x, ~0.0035 at 1.1x: just under
        claude = wrap(
            anthropic.Anthropic(api_key="k", base_url=server.url, max_retries=0),
            gate, service="bot", prompt_margin=0,
        )  # fmt: skip
        with pytest.raises(BudgetExceededError):
            claude.messages.create(model="claude-geo", max_tokens=200, messages=hi)
        claude.messages.create(
            model="claude-geo", max_tokens=200, messages=hi, extra_body={"inference_geo": "global"}
        )
        assert server.total() == 7


class _Loopback(httpx2.BaseTransport):
    """Sends a request for any host to the local server, as a resolver pointing OpenAI's
    regional hosts at it would."""

    def __init__(self, server: LLMServer) -> None:
        self.url, self.inner = httpx2.URL(server.url), httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        request.url = request.url.copy_with(
            scheme=self.url.scheme, host=self.url.host, port=self.url.port
        )
        return self.inner.handle_request(request)


def test_a_call_sent_to_a_region_is_held_and_booked_at_its_premium(server: LLMServer) -> None:
    """A client pointed at `eu.api.openai.com` is billed 10% more by a model with a premium
    there: its calls are held and booked at the model's rates in the EU, in the tier that
    served them; the same model on the global host at its standard rates."""
    hi = [{"role": "user", "content": "hi"}]
    with open_gate(limit="0.0045") as gate:  # ~0.0041 held at standard rates, ~0.0045+ in EU
        eu = wrap(
            openai.OpenAI(api_key="k", base_url="https://eu.api.openai.com/v1", max_retries=0),
            gate, service="bot", prompt_margin=0, transport=_Loopback(server),
        )  # fmt: skip
        with pytest.raises(BudgetExceededError):
            eu.chat.completions.create(
                model="eu-test", messages=hi, max_tokens=1000, service_tier="default"
            )
        assert server.total() == 0
    with open_gate() as gate:
        eu = wrap(
            openai.OpenAI(api_key="k", base_url="https://eu.api.openai.com/v1"),
            gate, service="bot", transport=_Loopback(server),
        )  # fmt: skip
        eu.chat.completions.create(model="eu-test", messages=hi)
        eu.chat.completions.create(model="eu-test", messages=hi, service_tier="priority")
        global_ = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        global_.chat.completions.create(model="eu-test", messages=hi)
        usages = [u for _, _, u in server.usages]
        expected = billed("eu-test", usages[0], "eu") + billed("eu-test", usages[1], "priority_eu")
        expected += billed("eu-test", usages[2])
        assert spent(gate) == expected
        # Vertex AI's OpenAI-compatible API on a regional endpoint (any but the global one).
        vertex = "https://us-central1-aiplatform.googleapis.com/v1/projects/p/locations/us-central1"
        for host in (vertex, "https://aiplatform.eu.rep.googleapis.com/v1/projects/p"):
            regional = wrap(
                openai.OpenAI(api_key="k", base_url=f"{host}/endpoints/openapi"),
                gate, service="bot", transport=_Loopback(server),
            )  # fmt: skip
            regional.chat.completions.create(model="eu-test", messages=hi)
            expected += billed("eu-test", server.usages[-1][2], "regional")
        assert spent(gate) == expected
        used = [[u for u, n in e.units.items() if n] for e in gate.events()]
        assert all(u.startswith("regional_") for u in used[3] + used[4])
        assert all(u.startswith("eu_") for u in used[0])
        assert all(u.startswith("priority_eu_") for u in used[1])
        assert not any(u.startswith(("eu_", "priority_")) for u in used[2])


def test_a_call_made_off_peak_is_booked_at_the_off_peak_rates(server: LLMServer) -> None:
    """DeepSeek's off-peak hours (a source's `variant_hours`): a call made within them is
    booked at the off-peak rates, one made in the peak hours at the standard ones; each is
    held at the dearer."""
    rates = {"input_token": "2/1M", "output_token": "8/1M", "cached_input_token": "1/1M",
             "cache_write_token": "2/1M"}  # fmt: skip
    night = {"hours_utc": ["10:00-00:00"], "weekdays": [1, 2, 3, 4, 5]}
    source = {
        "price": rates | {f"off_peak_{unit}": f"{Decimal(rate[:-3]) / 2}/1M"
                          for unit, rate in rates.items()},
        "variants": ["off_peak"],
        "variant_hours": {"off_peak": {"windows": [night]}},
    }  # fmt: skip
    config = parse({"sources": {"gpt-test": source}, "budgets": [{"name": "llm", "limit": "1"}]})
    clock = FrozenClock(datetime(2026, 12, 7, 9, 0, tzinfo=UTC))  # a Monday, 17:00 in Beijing
    hi = [{"role": "user", "content": "hi"}]
    with Gate.open("memory://", config=config, clock=clock) as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        client.chat.completions.create(model="gpt-test", messages=hi)  # peak
        clock.advance(timedelta(hours=3))  # 20:00 in Beijing: off-peak
        client.chat.completions.create(model="gpt-test", messages=hi)
        peak, off_peak = (billed("gpt-test", usage) for _, _, usage in server.usages)
        assert spent(gate) == 2 * peak + off_peak  # the standard rates are twice gpt-test's
        peak_units, off_peak_units = (list(e.units) for e in gate.events())
        assert not any(unit.startswith("off_peak_") for unit in peak_units)
        assert all(unit.startswith("off_peak_") for unit in off_peak_units)


def test_a_call_is_held_at_the_dearest_tier_it_may_be_served_in(server: LLMServer) -> None:
    """A call that names no tier may be served in the dearest (its project's setting
    decides), so it is held at that tier's rates; `default` is held at the standard rates,
    and a tier it names at the dearer of that tier and the standard one."""
    hi = [{"role": "user", "content": "hi"}]
    with open_gate(limit="0.006") as gate:  # ~0.0041 at standard rates, ~0.0082 at priority
        client = wrap(
            openai.OpenAI(api_key="k", base_url=f"{server.url}/v1", max_retries=0),
            gate, service="bot", prompt_margin=0,
        )  # fmt: skip
        for tier in (None, "auto", "priority"):
            named = {"service_tier": tier} if tier else {}
            with pytest.raises(BudgetExceededError):
                client.chat.completions.create(
                    model="tier-test", messages=hi, max_tokens=1000, **named
                )
        assert server.total() == 0
        for tier in ("default", "flex"):
            client.chat.completions.create(
                model="tier-test", messages=hi, max_tokens=1000, service_tier=tier
            )
        assert server.total() == 2
        spent_, expected = booked(gate, server)
        assert spent_ == expected > 0


def test_an_error_response_releases_the_hold(server: LLMServer) -> None:
    with open_gate() as gate:
        client = wrap(
            openai.OpenAI(api_key="k", base_url=f"{server.url}/v1", max_retries=0),
            gate,
            service="bot",
        )
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(model="bad-request", messages=[], max_tokens=5)
        assert server.total() == 1
        assert spent(gate) == 0
        assert gate.events() == []


def test_a_stream_cancelled_halfway_is_booked_at_its_hold(server: LLMServer) -> None:
    """The server reports usage only at the end of a stream; a stream closed before then is
    booked at its hold, the most it could have cost, and never left pending."""
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        stream = client.chat.completions.create(
            model="slow-test", messages=[{"role": "user", "content": "hi"}], max_tokens=100,
            stream=True,
        )  # fmt: skip
        first = next(iter(stream))
        assert first.choices[0].delta.content == "hel"
        wait_until(server.streaming, "the stream to pause")
        stream.close()
        server.release.set()
        [event] = gate.events()
        assert event.cost is not None
        assert event.cost > 0
        assert spent(gate) > 0
        assert server.usages == []  # the server never reported usage


def test_async_clients(server: LLMServer) -> None:
    async def main(gate: Gate) -> None:
        client = wrap(
            openai.AsyncOpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot"
        )
        assert isinstance(client, openai.AsyncOpenAI)
        await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], max_tokens=10
        )
        stream = await client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert [c.choices[0].delta.content async for c in stream] == ["hel", "lo", "!"]
        claude = wrap(
            anthropic.AsyncAnthropic(api_key="k", base_url=server.url), gate, service="bot"
        )
        async with claude.messages.stream(
            model="claude-test", max_tokens=30, messages=[{"role": "user", "content": "hi"}]
        ) as events:
            assert await events.get_final_text() == "hello"
        await asyncio.gather(
            *(client.embeddings.create(model="gpt-test", input=f"text {i}") for i in range(10))
        )

    with open_gate() as gate:
        asyncio.run(main(gate))
        spent_, expected = booked(gate, server)
        assert len(server.usages) == 13
        assert spent_ == expected > 0


def test_eight_threads_never_overspend_a_small_hard_budget(
    server: LLMServer, tmp_path: Path
) -> None:
    """8 threads x 50 calls, sync and streamed, OpenAI and Anthropic, against a budget that
    holds only a part of them: spent never passes the limit, every call that went through
    is booked at the usage the server sent, and every refused one never reached it."""
    limit = Decimal("0.02")
    refused = []
    with open_gate(str(limit), f"sqlite:///{tmp_path / 'llm.db'}") as gate:
        openai_client = wrap(
            openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot"
        )
        claude = wrap(anthropic.Anthropic(api_key="k", base_url=server.url), gate, service="bot")
        lock = threading.Lock()

        def worker(n: int) -> None:
            for i in range(50):
                messages = [{"role": "user", "content": f"thread {n} call {i} " + "x" * 400}]
                try:
                    if i % 3 == 0:
                        claude.messages.create(
                            model="claude-test", max_tokens=40, messages=messages
                        )  # type: ignore[arg-type]
                    elif i % 3 == 1:
                        for _ in openai_client.chat.completions.create(
                            model="gpt-test",
                            messages=messages,
                            max_tokens=40,  # type: ignore[arg-type]
                            stream=True,
                        ):
                            pass
                    else:
                        openai_client.chat.completions.create(
                            model="gpt-test",
                            messages=messages,
                            max_tokens=40,  # type: ignore[arg-type]
                        )
                except BudgetExceededError:
                    with lock:
                        refused.append((n, i))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        spent_, expected = booked(gate, server)
        assert spent_ == expected
        assert 0 < spent_ <= limit
        assert refused, "the budget was small enough to refuse some calls"
        assert server.total() == 400 - len(refused)
        assert len(gate.events()) == server.total()


def test_an_async_stream_cancelled_halfway_is_booked_at_its_hold(server: LLMServer) -> None:
    async def main(gate: Gate) -> None:
        client = wrap(
            openai.AsyncOpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot"
        )
        got: list[str] = []
        first = asyncio.Event()

        async def consume() -> None:
            stream = await client.chat.completions.create(
                model="slow-test", messages=[{"role": "user", "content": "hi"}],
                max_tokens=100, stream=True,
            )  # fmt: skip
            async with stream:
                async for chunk in stream:
                    got.append(chunk.choices[0].delta.content or "")
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 30)  # the caller has read the first chunk
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert got == ["hel"]

    with open_gate() as gate:
        asyncio.run(main(gate))
        server.release.set()
        [event] = gate.events()
        assert event.cost is not None
        assert event.cost > 0
        assert spent(gate) == Decimal(event.cost) / 10**9


def test_the_source_a_call_counts_as_and_bad_options(server: LLMServer) -> None:
    with open_gate() as gate:
        base = openai.OpenAI(api_key="k", base_url=f"{server.url}/v1")
        mapped = wrap(base, gate, service="bot", source={"gpt-4o": "claude-test"})
        mapped.chat.completions.create(model="gpt-4o", messages=[], max_tokens=5)
        fixed = wrap(base, gate, service="bot", source="gpt-test", labels={"team": "a"})
        fixed.chat.completions.create(model="anything", messages=[], max_tokens=5)
        called = wrap(base, gate, service="bot", source=lambda model: model.removeprefix("x-"))
        called.chat.completions.create(model="x-gpt-test", messages=[], max_tokens=5)
        assert [(e.source, dict(e.labels)) for e in gate.events()] == [
            ("claude-test", {}),
            ("gpt-test", {"team": "a"}),
            ("gpt-test", {}),
        ]
        for bad in ({"max_output_tokens": 0}, {"media_tokens": -1}, {"prompt_margin": "lots"}):
            with pytest.raises(ValidationError, match=next(iter(bad))):
                wrap(base, gate, service="bot", **bad)  # type: ignore[arg-type]


def test_a_limit_sent_as_none_is_replaced_by_the_cap(server: LLMServer) -> None:
    """The SDK sends `max_tokens=None` as `null`, which is no limit: the cap goes in its
    place, so the output the bound assumed is the most the server may send."""
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        client.chat.completions.create(
            model="gpt-test", messages=[{"role": "user", "content": "hi"}],
            max_completion_tokens=None,  # type: ignore[arg-type]
        )  # fmt: skip
        assert server.bodies[-1]["max_completion_tokens"] == 4096
        client.chat.completions.create(
            model="gpt-test", messages=[], max_tokens=None, max_completion_tokens=7,  # type: ignore[arg-type]
        )  # fmt: skip
        assert server.bodies[-1]["max_completion_tokens"] == 7  # a real limit is kept
        spent_, expected = booked(gate, server)
        assert spent_ == expected


def test_usage_that_does_not_add_up_is_booked_at_the_hold(
    server: LLMServer, caplog: pytest.LogCaptureFixture
) -> None:
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        client.chat.completions.create(model="bad-usage", messages=[], max_tokens=5)
        [event] = gate.events()
        assert event.cost is not None
        assert event.cost > 0  # the hold: the most it could cost
        assert spent(gate) == Decimal(event.cost) / 10**9  # and nothing left pending
        assert server.total() == 1  # booked once, never retried
        assert "does not read" in caplog.text


def test_a_hold_is_exact_in_any_decimal_context(server: LLMServer) -> None:
    """The bound is worked out in the exact context: in a caller's `prec=3` it would be
    rounded, perhaps down, and hold less than the call can cost. A usage that does not add
    up is booked at the hold, which shows it."""
    sizes: list[int] = []

    class Recording(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            sizes.append(len(request.content))
            return super().handle_request(request)

    with open_gate() as gate:
        client = wrap(
            openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"),
            gate, service="bot", prompt_margin=0, transport=Recording(),
        )  # fmt: skip
        with localcontext() as context:
            context.prec = 3
            client.chat.completions.create(model="bad-usage", messages=[], max_tokens=1001)
        [event] = gate.events()
        assert event.cost == (sizes[0] * 1 + 1001 * 4) * 1000  # nanos, at 1/1M and 4/1M


def test_every_media_part_is_held_for_wherever_it_is(server: LLMServer) -> None:
    """An image, audio clip, file or video costs tokens its bytes do not bound: each part
    adds `media_tokens` to the hold, in a message's content or anywhere else in the body."""
    sizes: list[int] = []

    class Recording(httpx2.HTTPTransport):
        def handle_request(self, request: httpx2.Request) -> httpx2.Response:
            sizes.append(len(request.content))
            return super().handle_request(request)

    parts = [
        {"type": "text", "text": "what is in the picture, the clip and the file?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
    ]
    deep = {"kept": [{"notes": {"type": "file", "file": {"file_id": "f"}}}, {"type": "text"}]}
    with open_gate() as gate:
        client = wrap(
            openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"),
            gate, service="bot", prompt_margin=0, media_tokens=100, transport=Recording(),
        )  # fmt: skip
        for body in ({}, deep):
            client.chat.completions.create(
                model="bad-usage", messages=[{"role": "user", "content": parts}],
                max_tokens=7, extra_body=body,
            )  # fmt: skip
        holds = [event.cost for event in gate.events()]
        media = [2, 3]
        assert holds == [
            (size + 100 * n + 7 * 4) * 1000 for size, n in zip(sizes, media, strict=True)
        ]


def test_what_a_request_pulls_in_from_the_provider_needs_a_bound(server: LLMServer) -> None:
    with open_gate() as gate:
        base = openai.OpenAI(api_key="k", base_url=f"{server.url}/v1")
        client = wrap(base, gate, service="bot")
        with pytest.raises(ValidationError, match=r"previous_response_id.*context_tokens"):
            client.responses.create(model="gpt-test", input="and?", previous_response_id="r1")
        with pytest.raises(ValidationError, match="tools"):
            client.responses.create(
                model="gpt-test", input="news?", tools=[{"type": "web_search_preview"}]
            )
        assert server.total() == 0
        bounded = wrap(base, gate, service="bot", context_tokens=50_000)
        bounded.responses.create(
            model="gpt-test", input="and?", previous_response_id="r1", max_output_tokens=5
        )
        assert server.total() == 1


def test_a_cancelled_async_reservation_leaves_no_hold(server: LLMServer, tmp_path: Path) -> None:
    """Cancelled at each point of `areserve()` on a SQL store (its group commit hands the
    hold to a writer thread): whether or not the hold landed, none is left pending."""

    async def main(gate: Gate) -> None:
        client = wrap(
            openai.AsyncOpenAI(api_key="k", base_url=f"{server.url}/v1", max_retries=0),
            gate,
            service="bot",
        )
        for ticks in range(12):
            task = asyncio.create_task(
                client.chat.completions.create(model="gpt-test", messages=[], max_tokens=5)
            )
            for _ in range(ticks):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        from spendgate.llm import clients

        while clients._UNDOING:  # the releases of holds taken by cancelled reservations
            await asyncio.gather(*clients._UNDOING)

    with open_gate(db=f"sqlite:///{tmp_path / 'cancel.db'}") as gate:
        asyncio.run(main(gate))
        [status] = gate.status()
        assert status.reserved == 0
        assert status.spent == sum(Decimal(e.cost or 0) for e in gate.events()) / 10**9


def test_a_hold_lasts_as_long_as_a_long_call(server: LLMServer) -> None:
    """The default reservation TTL (5 minutes) is shorter than a long stream: the wrapper's
    holds last `hold_ttl` (an hour), so an open call's money is never given to another."""
    clock = FrozenClock()
    config = parse({"sources": sources(), "budgets": [{"name": "llm", "limit": "100"}]})
    with Gate.open("memory://", config=config, clock=clock) as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        stream = client.chat.completions.create(
            model="slow-test", messages=[], max_tokens=100, stream=True
        )
        next(iter(stream))
        clock.advance(timedelta(minutes=30))
        gate.expire()
        assert gate.status()[0].reserved > 0
        server.release.set()
        list(stream)
        assert gate.status()[0].reserved == 0
        with pytest.raises(ValidationError, match="hold_ttl"):
            wrap(openai.OpenAI(api_key="k"), gate, service="bot", hold_ttl="soon")


def test_a_stream_dropped_unclosed_is_booked(server: LLMServer) -> None:
    with open_gate() as gate:
        client = wrap(openai.OpenAI(api_key="k", base_url=f"{server.url}/v1"), gate, service="bot")
        stream = client.chat.completions.create(
            model="slow-test", messages=[], max_tokens=100, stream=True
        )
        next(iter(stream))
        del stream
        gc.collect()
        server.release.set()
        from spendgate.llm import clients

        for booking in list(clients._BOOKING):  # booked on a thread of its own
            booking.join(30)
        [event] = gate.events()
        assert event.cost is not None
        assert spent(gate) == Decimal(event.cost) / 10**9


def test_a_refusal_pickles_as_spendgates_own_error(server: LLMServer) -> None:
    with open_gate(limit="0.000001") as gate:
        claude = wrap(anthropic.Anthropic(api_key="k", base_url=server.url), gate, service="bot")
        with pytest.raises(BudgetExceededError) as refused:
            claude.messages.create(model="claude-test", max_tokens=64, messages=[])
        assert isinstance(refused.value, anthropic.AnthropicError)
        again = pickle.loads(pickle.dumps(refused.value))
        assert type(again) is BudgetExceededError
        assert str(again) == str(refused.value)


def test_server_sent_events_in_every_line_ending() -> None:
    """CR LF, LF or CR, and a CR LF split across two chunks; an event with no blank line
    after it at the end of the stream."""
    from spendgate.llm.clients import _Call, _Events

    usage = '{"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}'
    text = f'data: {{"choices": [{{"delta": {{}}}}]}}\r\n\r\ndata: {usage}\r\rdata: [DONE]'
    call = _Call("chat", "gpt-test", None, Decimal(0), None, hidden_usage=True)  # type: ignore[arg-type]
    for cut in range(len(text)):
        events = _Events(call)
        raw = text.encode()
        passed = events.feed(raw[:cut]) + events.feed(raw[cut:]) + events.rest()
        assert events.complete, cut
        assert events.usage["prompt_tokens"] == 3
        assert b"usage" not in passed  # asked on the caller's behalf: not shown
        assert passed.count(b"data:") == 2  # the chunk and [DONE]
