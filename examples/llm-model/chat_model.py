"""The LLM demo model's code, logged with MLflow's models-from-code: a ChatModel that needs no weights.

It answers "[<label>] <last user message>", so a caller can tell which registered version served it and a
test can predict every answer. Tokens are whitespace-separated words: usage.prompt_tokens counts the words
of every message's text, usage.completion_tokens the words of the answer. max_tokens cuts the answer to that
many words (finish_reason "length"), n repeats it n times. custom_outputs echoes the label and the chat
params the model received, so a test can see exactly what MLflow's scoring server passed through.
"""

import hashlib
import json

import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import (
    ChatChoice,
    ChatChoiceDelta,
    ChatChunkChoice,
    ChatCompletionChunk,
    ChatCompletionResponse,
    ChatMessage,
    TokenUsageStats,
)

# The ChatParams fields reported back in custom_outputs["params"] (None values are left out).
REPORTED_PARAMS = ("temperature", "max_tokens", "stop", "n", "stream", "top_p", "top_k", "frequency_penalty", "presence_penalty", "custom_inputs")


def message_text(message) -> str:
    """The text of a message: its string content, or the text parts of multimodal content."""
    content = message.content
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if part.get("type") == "text")
    return ""


def count_tokens(text: str) -> int:
    """The demo's tokenizer: whitespace-separated words."""
    return len(text.split())


class EchoChatModel(ChatModel):
    def load_context(self, context):
        config = context.model_config or {}
        self.label = str(config.get("label", "unlabelled"))
        self.model_name = str(config.get("model_name", "echo-chat"))

    def _answer(self, messages, params):
        """(words of the answer, finish_reason, prompt token count) for a request."""
        last_user = next((message_text(m) for m in reversed(messages) if m.role == "user"), "")
        words = f"[{self.label}] {last_user}".split()
        finish_reason = "stop"
        if params.max_tokens is not None and len(words) > params.max_tokens:
            words = words[: max(params.max_tokens, 0)]
            finish_reason = "length"
        prompt_tokens = sum(count_tokens(message_text(m)) for m in messages)
        return words, finish_reason, prompt_tokens

    def _completion_id(self, messages, params) -> str:
        """An id derived from the request and the label: the same question to the same version, the same id."""
        seed = json.dumps([self.label, [m.to_dict() for m in messages], params.max_tokens, params.n], sort_keys=True)
        return "chatcmpl-" + hashlib.sha256(seed.encode()).hexdigest()[:24]

    def _custom_outputs(self, params):
        received = {name: getattr(params, name) for name in REPORTED_PARAMS if getattr(params, name, None) is not None}
        return {"label": self.label, "params": received}

    def predict(self, context, messages, params):
        words, finish_reason, prompt_tokens = self._answer(messages, params)
        text = " ".join(words)
        n = max(params.n or 1, 1)
        choices = [ChatChoice(index=i, message=ChatMessage(role="assistant", content=text), finish_reason=finish_reason) for i in range(n)]
        completion_tokens = len(words) * n
        return ChatCompletionResponse(
            choices=choices,
            usage=TokenUsageStats(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, total_tokens=prompt_tokens + completion_tokens),
            id=self._completion_id(messages, params),
            model=self.model_name,
            custom_outputs=self._custom_outputs(params),
        )

    def predict_stream(self, context, messages, params):
        # One chunk per word (the space before it included, as OpenAI's deltas do), then a chunk carrying the
        # finish_reason, then one with empty choices and the usage: the shape OpenAI streams when asked for
        # stream_options.include_usage.
        words, finish_reason, prompt_tokens = self._answer(messages, params)
        completion_id = self._completion_id(messages, params)

        def chunk(choices, usage=None, custom_outputs=None):
            return ChatCompletionChunk(choices=choices, usage=usage, id=completion_id, model=self.model_name, custom_outputs=custom_outputs)

        for i, word in enumerate(words):
            yield chunk([ChatChunkChoice(index=0, delta=ChatChoiceDelta(role="assistant", content=word if i == 0 else " " + word))])
        yield chunk([ChatChunkChoice(index=0, delta=ChatChoiceDelta(role="assistant", content=""), finish_reason=finish_reason)])
        usage = TokenUsageStats(prompt_tokens=prompt_tokens, completion_tokens=len(words), total_tokens=prompt_tokens + len(words))
        yield chunk([], usage=usage, custom_outputs=self._custom_outputs(params))


mlflow.models.set_model(EchoChatModel())
