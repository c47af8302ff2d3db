// Runs the official OpenAI Node SDK against nextact: models.list and
// models.retrieve, n = 3 choices (seeded, distinct, indexed) and n = 2
// streamed, penalties
// and min_p accepted, logit_bias banning a token, and a list of prompts
// with n. NEXTACT_URL and NEXTACT_MODEL say where; it prints one line per
// check and exits non-zero on a failure.
import OpenAI from "openai";

const base = process.env.NEXTACT_URL;
const client = new OpenAI({ baseURL: base + "/v1", apiKey: "none", maxRetries: 0 });
const model = process.env.NEXTACT_MODEL;

let failed = false;
function check(name, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  if (!ok) failed = true;
}
async function attempt(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name, false, String(e));
  }
}

await attempt("models.retrieve", async () => {
  const list = await client.models.list();
  const ids = list.data.map((m) => m.id);
  const m = await client.models.retrieve(model);
  check("models.retrieve", ids.includes(model) && m.id === model && m.object === "model", JSON.stringify(m));
});

await attempt("models.retrieve unknown", async () => {
  try {
    await client.models.retrieve("no-such-model");
    check("models.retrieve unknown", false, "found");
  } catch (e) {
    check("models.retrieve unknown", e instanceof OpenAI.NotFoundError, String(e));
  }
});

const messages = [{ role: "user", content: "A shopper opens the store page, looks at three shirts and then" }];

await attempt("n = 3", async () => {
  const res = await client.chat.completions.create({ model, messages, n: 3, temperature: 1.0, seed: 11, max_tokens: 12 });
  const texts = res.choices.map((c) => c.message.content);
  const indexed = res.choices.every((c, i) => c.index === i);
  // Choice 1 is what a single request with seed 12 answers.
  const alone = await client.chat.completions.create({ model, messages, temperature: 1.0, seed: 12, max_tokens: 12 });
  check("n = 3", res.choices.length === 3 && indexed && texts[1] === alone.choices[0].message.content, JSON.stringify(texts));
});

await attempt("n = 2 streamed", async () => {
  const whole = await client.chat.completions.create({ model, messages, n: 2, temperature: 1.0, seed: 21, max_tokens: 10 });
  const stream = await client.chat.completions.create({ model, messages, n: 2, temperature: 1.0, seed: 21, max_tokens: 10, stream: true });
  const texts = ["", ""];
  const finish = [null, null];
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      texts[c.index] += c.delta?.content ?? "";
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  const same = whole.choices.every((c, i) => c.message.content === texts[i] && c.finish_reason === finish[i]);
  check("n = 2 streamed", same, JSON.stringify(texts));
});

await attempt("penalties", async () => {
  const res = await client.chat.completions.create({
    model, messages, temperature: 0, max_tokens: 24,
    presence_penalty: 1.5, frequency_penalty: 1.0, min_p: 0.1, repetition_penalty: 1.3,
  });
  check("penalties", res.choices[0].finish_reason !== undefined && res.choices[0].message.content.length > 0, JSON.stringify(res.choices[0].message.content));
});

await attempt("logit_bias bans", async () => {
  const prompt = "The cart holds";
  const plain = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 6 });
  const tok = await fetch(base + "/tokenize", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, content: plain.choices[0].text, add_special: false }),
  }).then((r) => r.json());
  const first = tok.tokens[0];
  const banned = await client.completions.create({ model, prompt, temperature: 0, max_tokens: 6, logit_bias: { [first]: -100 } });
  const again = await fetch(base + "/tokenize", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ model, content: banned.choices[0].text, add_special: false }),
  }).then((r) => r.json());
  check("logit_bias bans", !again.tokens.includes(first) && banned.choices[0].text !== plain.choices[0].text,
    JSON.stringify([plain.choices[0].text, banned.choices[0].text, first]));
});

await attempt("completions list with n", async () => {
  const res = await client.completions.create({ model, prompt: ["Once upon", "a time"], n: 2, max_tokens: 4, temperature: 0 });
  check("completions list with n", res.choices.length === 4 && res.choices.every((c, i) => c.index === i), JSON.stringify(res.choices.map((c) => c.text)));
});

process.exit(failed ? 1 : 0);
