// Runs LangChain JS (@langchain/openai's ChatOpenAI) against nextact:
// withStructuredOutput with a nested Zod schema (method jsonSchema, i.e.
// response_format json_schema), invoke and stream, and a plain completion.
// NEXTACT_URL and NEXTACT_MODEL say where; one line per check; exits
// non-zero on a failure.
import { ChatOpenAI } from "@langchain/openai";
import { z } from "zod";

const llm = new ChatOpenAI({
  model: process.env.NEXTACT_MODEL,
  apiKey: "none",
  configuration: { baseURL: process.env.NEXTACT_URL + "/v1" },
  temperature: 1.0,
  maxTokens: 300,
  maxRetries: 0,
});

const Review = z.object({
  product: z.string().max(40),
  rating: z.number().int().min(1).max(5),
  pros: z.array(z.string().max(30)).max(3),
  verdict: z.enum(["buy", "skip"]),
  reviewer: z.object({ name: z.string().max(20), verified: z.boolean() }).nullable(),
});

let failed = false;
function check(name, ok, detail) {
  console.log(`${ok ? "ok" : "FAIL"} ${name}${detail ? ": " + detail : ""}`);
  if (!ok) failed = true;
}

const structured = llm.withStructuredOutput(Review, { name: "review", method: "jsonSchema" });
for (const seed of [1, 2]) {
  try {
    const r = await structured.invoke("Review a pair of shoes.", { seed });
    check(`withStructuredOutput seed ${seed}`, Review.safeParse(r).success, JSON.stringify(r).slice(0, 120));
  } catch (e) {
    check(`withStructuredOutput seed ${seed}`, false, String(e));
  }
}
try {
  let last = null;
  for await (const chunk of await structured.stream("Review a jacket.")) last = chunk;
  check("withStructuredOutput stream", Review.safeParse(last).success, JSON.stringify(last).slice(0, 120));
} catch (e) {
  check("withStructuredOutput stream", false, String(e));
}
try {
  const m = await llm.invoke([["system", "You are a shopper."], ["human", "Hi"]], { max_tokens: 8 });
  check("invoke", typeof m.content === "string", JSON.stringify(m.content));
} catch (e) {
  check("invoke", false, String(e));
}
process.exit(failed ? 1 : 0);
