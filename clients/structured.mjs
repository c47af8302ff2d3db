// Runs the official OpenAI Node SDK against nextact: structured outputs
// through chat.completions.parse with nested, optional and nullable Zod
// schemas (zodResponseFormat), a streamed structured output parsed by
// Zod, a list of prompts on completions, and a parameter out of its range
// refused with a 400 that names it. NEXTACT_URL and NEXTACT_MODEL say
// where; it prints one line per check and exits non-zero on a failure.
import OpenAI from "openai";
import { zodResponseFormat } from "openai/helpers/zod";
import { z } from "zod";

const client = new OpenAI({ baseURL: process.env.NEXTACT_URL + "/v1", apiKey: "none", maxRetries: 0 });
const model = process.env.NEXTACT_MODEL;

const Address = z.object({
  street: z.string().max(40),
  city: z.string(),
  zip: z.string().regex(/^[0-9]{5}$/).nullable(),
});
const Item = z.object({
  sku: z.string().min(3).max(12),
  quantity: z.number().int().min(1).max(99),
  price: z.number().min(0),
  gift: z.boolean().optional(),
  discount: z.number().min(0).max(50).nullable(),
});
const Order = z.object({
  id: z.string().uuid(),
  status: z.enum(["pending", "paid", "shipped"]),
  shipTo: Address,
  items: z.array(Item).max(3),
  note: z.string().max(60).optional(),
  coupon: z.union([z.string().max(8), z.null()]),
});
const Action = z.object({
  rationale: z.string().max(200),
  action: z.discriminatedUnion("type", [
    z.object({ type: z.literal("click"), name: z.string() }),
    z.object({ type: z.literal("type_and_submit"), name: z.string(), text: z.string().max(50) }),
    z.object({ type: z.literal("terminate") }),
  ]),
});

let failed = false;
function check(name, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  if (!ok) failed = true;
}

for (const [name, schema] of [["order", Order], ["action", Action]]) {
  for (const seed of [1, 2, 3]) {
    try {
      const res = await client.beta.chat.completions.parse({
        model,
        messages: [{ role: "user", content: `Write a ${name}.` }],
        response_format: zodResponseFormat(schema, name),
        temperature: 1.0,
        seed,
        max_tokens: 400,
      });
      const parsed = res.choices[0].message.parsed;
      check(`parse ${name} seed ${seed}`, parsed !== null && schema.safeParse(parsed).success, JSON.stringify(parsed).slice(0, 120));
    } catch (e) {
      check(`parse ${name} seed ${seed}`, false, String(e));
    }
  }
}

try {
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Write an order." }],
    response_format: zodResponseFormat(Order, "order"),
    temperature: 1.0,
    seed: 7,
    max_tokens: 400,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.choices.length > 0) text += chunk.choices[0].delta.content ?? "";
    if (chunk.usage) usage = chunk.usage;
  }
  const r = Order.safeParse(JSON.parse(text));
  check("stream order", r.success && usage !== null, r.success ? text.slice(0, 120) : JSON.stringify(r.error.issues) + " " + text);
} catch (e) {
  check("stream order", false, String(e));
}

try {
  const res = await client.completions.create({ model, prompt: ["Once upon", "a time"], max_tokens: 5, temperature: 0 });
  check("completions list", res.choices.length === 2 && res.choices.every((c, i) => c.index === i), JSON.stringify(res.choices.map((c) => c.index)));
} catch (e) {
  check("completions list", false, String(e));
}

try {
  await client.chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], presence_penalty: 2.5 });
  check("presence_penalty out of range refused", false, "accepted");
} catch (e) {
  check("presence_penalty out of range refused", e instanceof OpenAI.BadRequestError && e.param === "presence_penalty", String(e));
}

process.exit(failed ? 1 : 0);
