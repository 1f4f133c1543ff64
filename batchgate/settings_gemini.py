"""The model section of batchgate's settings: which model answers, how it is called, its quotas."""

from __future__ import annotations

from dataclasses import dataclass, field

from batchgate.env import SettingsError
from batchgate.settings_sections import at_least_one
from batching.pricing import PriceTable
from batching.quota import ModelQuota, QuotaTable

DEFAULT_SIMULATOR_URL = "http://127.0.0.1:8090"


@dataclass(frozen=True)
class GeminiSettings:
    """Which model answers and how the workers call it."""

    #: Default Gemini model when a request names none.
    model: str = "gemini-2.5-flash"
    #: Gemini-compatible simulator to call; empty = the embedded one
    #: (BATCHGATE_SIM_HOST:BATCHGATE_SIM_PORT) unless GEMINI_API_KEY is set, then real Gemini.
    simulator_url: str = ""
    #: Timeout of one Gemini call.
    gemini_timeout_s: float = 60.0
    #: Gemini calls in flight at once per worker process (a lone worker under a quota of
    #: 300 RPM at Gemini-like call times runs about 18).
    max_concurrent_calls: int = 32
    #: Let requests of different tenants share one Gemini call. Only for a deployment that serves
    #: one organisation: every item of a packed call is visible to, and can be steered by, a
    #: prompt injected into any other item of that call. Tenants then share Gemini's implicit
    #: prompt cache too (no tenant scope line opens their calls).
    share_calls_across_tenants: bool = False
    #: Gemini calls the whole cluster may start per minute: your project's RPM quota, shared by
    #: every worker process through Redis (0 = unpaced). Calls beyond it wait their turn
    #: instead of meeting 429s.
    model_rpm: int = 0
    #: Input tokens the whole cluster may send the default model per minute: your project's
    #: TPM quota (0 = unpaced). A call takes its estimated tokens before it leaves; Gemini's
    #: usageMetadata corrects them after.
    model_tpm: int = 0
    #: Calls the whole cluster may make to the default model per day (reset at midnight
    #: Pacific): your project's RPD quota (0 = uncounted). Beyond it, the model is not called
    #: and its tasks fail with model_daily_quota_exhausted.
    model_rpd: int = 0
    #: Quotas of other models, as model:rpm=N,tpm=N,rpd=N;model2:... (a quota left out is the
    #: default model's); a model not listed gets the default model's quotas, counted apart.
    model_quotas: str = ""
    #: What becomes of the tasks waiting for a model whose day quota is spent: fail (at once,
    #: model_daily_quota_exhausted) or park (queued until midnight Pacific, then sent again;
    #: conversation turns still fail).
    day_quota_action: str = "fail"
    #: Bulk lane (tasks sent with "lane": "bulk", answered through Gemini's Batch API at half
    #: price within its 24-hour target): how often the waiting tasks are gathered into jobs.
    bulk_dispatch_s: float = 10.0
    #: Bulk lane: how often a Gemini batch job is looked at until it ends.
    bulk_poll_s: float = 30.0
    #: Bulk lane: most tasks gathered into one dispatch (its calls go in one job per tenant and model).
    bulk_max_tasks: int = 10000
    #: Bulk lane: jobs a task's call may go through (a failed, expired or cancelled job, or a
    #: request it could not answer, sends it again in the next) before the task fails.
    bulk_attempts: int = 3
    #: Bulk lane: a task not answered this long after its submission (its worker died, say)
    #: is sent again on the interactive lane by the orphan sweeper.
    bulk_deadline_s: int = 90000
    #: Bulk lane: a job's requests travel inline up to this size (Gemini's limit: 20 MB),
    #: beyond it as a JSONL file uploaded with the Files API.
    bulk_inline_max_bytes: int = 20 * 1024 * 1024
    #: Prices per model in USD per million tokens, over the defaults (taken from Gemini's
    #: pricing page on 2026-12-04, ``batching.pricing``): model:input=0.3,output=2.5,cached=0.03;...
    #: (``*`` prices every model not listed; an unpriced model costs 0). The Batch API bills half.
    prices: str = ""
    #: Real Gemini key (``GEMINI_API_KEY``, not a BATCHGATE_ variable: the SDK's own name).
    gemini_api_key: str = field(default="", repr=False, metadata={"env": False})
    #: Where the embedded simulator answers (from ``BATCHGATE_SIM_HOST``/``_PORT``).
    embedded_simulator_url: str = field(default=DEFAULT_SIMULATOR_URL, metadata={"env": False})

    def validate(self) -> None:
        at_least_one(self, "max_concurrent_calls", "bulk_max_tasks", "bulk_attempts")
        if min(self.bulk_dispatch_s, self.bulk_poll_s) <= 0:
            raise SettingsError("BATCHGATE_BULK_DISPATCH_S and BATCHGATE_BULK_POLL_S must be positive")
        if self.day_quota_action not in ("fail", "park"):
            raise SettingsError(
                f"BATCHGATE_DAY_QUOTA_ACTION must be fail or park, not {self.day_quota_action!r}"
            )
        try:
            QuotaTable.parse(ModelQuota(self.model_rpm, self.model_tpm, self.model_rpd), self.model_quotas)
        except ValueError as exc:
            raise SettingsError(f"BATCHGATE_MODEL_RPM/TPM/RPD/QUOTAS: {exc}") from None
        try:
            PriceTable.parse(self.prices)
        except ValueError as exc:
            raise SettingsError(f"BATCHGATE_PRICES: {exc}") from None

    @property
    def price_table(self) -> PriceTable:
        """What each model's tokens cost."""
        return PriceTable.parse(self.prices)

    @property
    def quotas(self) -> QuotaTable:
        """Every model's quotas for the whole cluster."""
        default = ModelQuota(rpm=self.model_rpm, tpm=self.model_tpm, rpd=self.model_rpd)
        return QuotaTable.parse(default, self.model_quotas)

    @property
    def uses_simulator(self) -> bool:
        """True unless real Gemini is configured (a key and no simulator URL)."""
        return bool(self.simulator_url) or not self.gemini_api_key

    @property
    def model_base_url(self) -> str | None:
        """Base URL the Gemini SDK is pointed at; None means Google's own endpoint."""
        if self.simulator_url:
            return self.simulator_url
        return None if self.gemini_api_key else self.embedded_simulator_url
