// Runs the official OpenAI Node SDK against nextact's logprobs: chat
// logprobs with top_logprobs, whole and streamed, and completions echo
// with logprobs and max_tokens 0 (the loglikelihood request of an
// evaluation harness), with a list of token-id prompts. NEXTACT_URL and
// NEXTACT_MODEL say where; it prints one line per check and exits non-zero
// on a failure.
import OpenAI from "openai";

const client = new OpenAI({ baseURL: process.env.NEXTACT_URL + "/v1", apiKey: "none", maxRetries: 0 });
const model = process.env.NEXTACT_MODEL;

let failed = false;
function check(name, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  if (!ok) failed = true;
}

// sorted: top entries best first, their mass at most 1.
function sorted(top) {
  let mass = 0;
  for (let i = 0; i < top.length; i++) {
    if (i > 0 && top[i].logprob > top[i - 1].logprob) return false;
    mass += Math.exp(top[i].logprob);
  }
  return mass <= 1 + 1e-5;
}

const messages = [{ role: "user", content: "Which shirt should the shopper view?" }];
let whole = null;
try {
  const res = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 3 });
  whole = res.choices[0].logprobs.content;
  const good = whole.length > 0 && whole.every((e) => e.top_logprobs.length === 3 && sorted(e.top_logprobs) && e.top_logprobs[0].token === e.token && Array.isArray(e.bytes));
  const text = Buffer.from(whole.flatMap((e) => e.bytes)).toString("utf8");
  check("chat logprobs", good && (res.choices[0].finish_reason !== "length" || text === res.choices[0].message.content), JSON.stringify(whole[0]).slice(0, 160));
} catch (e) {
  check("chat logprobs", false, String(e));
}

try {
  const stream = await client.chat.completions.create({ model, messages, max_tokens: 10, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
  const entries = [];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.logprobs?.content) entries.push(...c.logprobs.content);
    }
  }
  check("chat logprobs streamed", whole !== null && JSON.stringify(entries) === JSON.stringify(whole), `${entries.length} entries`);
} catch (e) {
  check("chat logprobs streamed", false, String(e));
}

try {
  await client.chat.completions.create({ model, messages, max_tokens: 2, logprobs: true, top_logprobs: 21 });
  check("top_logprobs 21 refused", false, "accepted");
} catch (e) {
  check("top_logprobs 21 refused", e.status === 400 && e.param === "top_logprobs", String(e));
}

try {
  const prompt = "The shopper looks at the cart and";
  const res = await client.completions.create({ model, prompt, max_tokens: 0, echo: true, logprobs: 1 });
  const c = res.choices[0];
  const lp = c.logprobs;
  const good = c.text === prompt && c.finish_reason === "length" && res.usage.completion_tokens === 0 &&
    lp.tokens.length === res.usage.prompt_tokens && lp.token_logprobs[0] === null && lp.top_logprobs[0] === null &&
    lp.token_logprobs.slice(1).every((x) => typeof x === "number" && x <= 0);
  // A list of token-id prompts, as a harness sends it.
  const ids = [[1, 2, 3, 4], [5, 6, 7]];
  const many = await client.completions.create({ model, prompt: ids, max_tokens: 0, echo: true, logprobs: 1 });
  const goodMany = many.choices.length === 2 && many.choices.every((ch, i) => ch.index === i && ch.logprobs.tokens.length === ids[i].length);
  check("completions echo logprobs max_tokens 0", good && goodMany, JSON.stringify(lp.token_logprobs.slice(0, 4)));
} catch (e) {
  check("completions echo logprobs max_tokens 0", false, String(e));
}

process.exit(failed ? 1 : 0);
