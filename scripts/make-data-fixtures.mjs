// Writes the small dataset and corpus fixtures of packages/data/test/fixtures (committed; re-run after changes):
//   node scripts/make-data-fixtures.mjs
// TSVs follow the GLUE layouts (tabs, no quoting); JSONL/parquet/Arrow use the HF column names. The Arrow files
// are IPC streams written by apache-arrow, as the `datasets` cache writes them. There is no parquet writer among
// the dependencies, so the parquet files are written here by hand, independently of the reader under test
// (hyparquet): one row group, OPTIONAL columns with RLE definition levels, PLAIN values, SNAPPY pages (literal-
// only snappy streams, which every snappy decoder accepts), INT64 labels like HF ClassLabel columns.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Table, tableToIPC, vectorFromArray, Utf8, Int64, Int32 } from 'apache-arrow';

const out = 'packages/data/test/fixtures';
mkdirSync(out, { recursive: true });
const tsv = (rows) => rows.map((r) => r.join('\t')).join('\n') + '\n';
const write = (name, data) => writeFileSync(join(out, name), data);

// ---------- GLUE TSV layouts ----------
const sst2 = [
  ['a gorgeous , witty , seductive movie . ', 1],
  ['the plot is nothing but boilerplate clichés from start to finish , ', 0],
  ["one of the year 's most intriguing explorations of alienation . ", 1],
  ['the acting is amateurish and the "jokes" fall flat . ', 0],
  ['a "charming" mess that never quite works . ', 0],
  ["an utterly compelling ' who wrote it ' in which the reputation of the most famous author who ever lived comes into question . ", 1],
];
write('sst2.tsv', tsv([['sentence', 'label'], ...sst2]));
write(
  'cola.tsv',
  tsv([
    ['gj04', '1', '', "Our friends won't buy this analysis, let alone the next one we propose."],
    ['gj04', '0', '*', 'They drank the pub.'],
    ['cj99', '1', '', 'The more we study verbs, the crazier they get.'],
  ]),
);
write(
  'mrpc.tsv',
  tsv([
    ['Quality', '#1 ID', '#2 ID', '#1 String', '#2 String'],
    ['1', '702876', '702977', 'He said the "foodservice" pie business doesn\'t fit.', 'The "foodservice" pie business does not fit, he said.'],
    ['0', '2108705', '2108831', "Yucaipa owned Dominick's before selling the chain.", 'Yucaipa bought the chain in 1995.'],
  ]),
);
write(
  'stsb.tsv',
  tsv([
    ['index', 'genre', 'filename', 'year', 'old_index', 'source1', 'source2', 'sentence1', 'sentence2', 'score'],
    ['0', 'main-captions', 'MSRvid', '2012test', '0000', 'none', 'none', 'A man with a hard hat is dancing.', 'A man wearing a hard hat is dancing.', '5.000'],
    ['1', 'main-captions', 'MSRvid', '2012test', '0002', 'none', 'none', 'A young child is riding a horse.', 'A child is riding a horse.', '4.750'],
    ['2', 'main-captions', 'MSRvid', '2012test', '0003', 'none', 'none', 'A man is feeding a mouse to a snake.', 'The man is playing the guitar.', '0.500'],
  ]),
);
write(
  'qqp.tsv',
  tsv([
    ['id', 'qid1', 'qid2', 'question1', 'question2', 'is_duplicate'],
    ['201359', '303345', '303346', 'Why are African-Americans so beautiful?', 'Why are hispanics so beautiful?', '0'],
    ['263843', '69383', '380476', 'I want to pursue PhD in Computer Science?', 'How can I pursue a PhD in computer science?', '1'],
  ]),
);
const mnliHeader = [
  'index',
  'promptID',
  'pairID',
  'genre',
  'sentence1_binary_parse',
  'sentence2_binary_parse',
  'sentence1_parse',
  'sentence2_parse',
  'sentence1',
  'sentence2',
  'label1',
  'label2',
  'label3',
  'label4',
  'label5',
  'gold_label',
];
const mnliRow = (i, s1, s2, gold) => [
  String(i),
  '63735',
  '63735n',
  'slate',
  '( x )',
  '( y )',
  '(ROOT x)',
  '(ROOT y)',
  s1,
  s2,
  gold,
  gold,
  gold,
  gold,
  gold,
  gold,
];
write(
  'mnli-dev_matched.tsv',
  tsv([
    mnliHeader,
    mnliRow(0, 'The new rights are nice enough', 'Everyone really likes the newest benefits ', 'neutral'),
    mnliRow(
      1,
      'This site includes a list of all award winners.',
      'The Government Executive articles housed on the website are not able to be searched.',
      'contradiction',
    ),
    mnliRow(2, "uh i don't know i i have mixed emotions about him", 'I like him for the most part.', 'entailment'),
  ]),
);
write(
  'qnli.tsv',
  tsv([
    ['index', 'question', 'sentence', 'label'],
    ['0', 'What came into force after the new constitution was herald?', 'As of that day, the new constitution came into force.', 'entailment'],
    ['1', 'What is the first major city in the stream of the Rhine?', 'The most important tributaries are the Ill and the Neckar.', 'not_entailment'],
  ]),
);
write(
  'rte.tsv',
  tsv([
    ['index', 'sentence1', 'sentence2', 'label'],
    ['0', 'Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer at age 44.', 'Christopher Reeve had an accident.', 'not_entailment'],
    ['1', 'Yet, we now are discovering that antibiotics are losing their effectiveness.', 'Bacteria is winning the war against antibiotics.', 'entailment'],
  ]),
);
write(
  'wnli.tsv',
  tsv([
    ['index', 'sentence1', 'sentence2', 'label'],
    ['0', 'The drain is clogged with hair. It has to be cleaned.', 'The hair has to be cleaned.', '0'],
    ['1', "Jane knocked on Susan's door but she did not answer.", 'Susan did not answer.', '1'],
  ]),
);
// Bad input: a row with a missing tab (line 3) and a label outside the set (line 3).
write('bad-row.tsv', tsv([['sentence', 'label'], ['fine row . ', '1'], ['a row without its label tab . 0']]));
write(
  'bad-label.tsv',
  tsv([
    ['index', 'question', 'sentence', 'label'],
    ['0', 'Why?', 'Because.', 'entailment'],
    ['1', 'Who?', 'Me.', 'contradiction'],
  ]),
);

// ---------- HF columns: JSONL, Arrow stream, parquet ----------
write('sst2.jsonl', sst2.map(([sentence, label], idx) => JSON.stringify({ sentence, label, idx })).join('\n') + '\n');
write('bad-json.jsonl', `${JSON.stringify({ sentence: 'ok . ', label: 1, idx: 0 })}\n{"sentence": "broken", "label": \n`);

const arrowTable = (columns) => new Table(columns);
write(
  'sst2.arrow',
  tableToIPC(
    arrowTable({
      sentence: vectorFromArray(
        sst2.map((r) => r[0]),
        new Utf8(),
      ),
      label: vectorFromArray(
        sst2.map((r) => BigInt(r[1])),
        new Int64(),
      ),
      idx: vectorFromArray(
        sst2.map((_, i) => i),
        new Int32(),
      ),
    }),
    'stream',
  ),
);

const corpusDocs = [
  'First Citizen:\nBefore we proceed any further, hear me speak.',
  'All:\nSpeak, speak.',
  '',
  'First Citizen:\nYou are all resolved rather to die than to famish?',
  'All:\nResolved. resolved.',
  'First Citizen:\nFirst, you know Caius Marcius is chief enemy to the people.',
  "All:\nWe know't, we know't.",
];
write('corpus.jsonl', corpusDocs.map((text, id) => JSON.stringify({ id, text })).join('\n') + '\n');
// Three record batches, as `datasets` writes in writer_batch_size pieces.
{
  const batches = [corpusDocs.slice(0, 3), corpusDocs.slice(3, 5), corpusDocs.slice(5)].map(
    (docs) => arrowTable({ text: vectorFromArray(docs, new Utf8()) }).batches[0],
  );
  write('corpus.arrow', tableToIPC(new Table(batches), 'stream'));
}

// ----- a minimal parquet writer (Thrift compact protocol) -----
class Thrift {
  constructor() {
    this.bytes = [];
    this.last = [0];
  }
  varint(v) {
    let n = BigInt(v);
    while (n >= 0x80n) {
      this.bytes.push(Number(n & 0x7fn) | 0x80);
      n >>= 7n;
    }
    this.bytes.push(Number(n));
  }
  zigzag(v) {
    const n = BigInt(v);
    this.varint(n >= 0n ? n << 1n : (-n << 1n) - 1n);
  }
  field(id, type) {
    const delta = id - this.last[this.last.length - 1];
    if (delta > 0 && delta <= 15) this.bytes.push((delta << 4) | type);
    else {
      this.bytes.push(type);
      this.zigzag(id);
    }
    this.last[this.last.length - 1] = id;
  }
  i32(id, v) {
    this.field(id, 5);
    this.zigzag(v);
  }
  i64(id, v) {
    this.field(id, 6);
    this.zigzag(v);
  }
  binary(id, v) {
    this.field(id, 8);
    this.rawBinary(v);
  }
  rawBinary(v) {
    const b = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.varint(b.length);
    this.bytes.push(...b);
  }
  struct(id, body) {
    this.field(id, 12);
    this.rawStruct(body);
  }
  rawStruct(body) {
    this.last.push(0);
    body(this);
    this.bytes.push(0);
    this.last.pop();
  }
  list(id, elemType, items, writeItem) {
    this.field(id, 9);
    if (items.length < 15) this.bytes.push((items.length << 4) | elemType);
    else {
      this.bytes.push(0xf0 | elemType);
      this.varint(items.length);
    }
    for (const it of items) writeItem(this, it);
  }
  buffer() {
    return Buffer.from(this.bytes);
  }
}

function snappyLiteral(data) {
  const parts = [];
  const head = new Thrift();
  head.varint(data.length);
  parts.push(head.buffer());
  for (let i = 0; i < data.length; i += 65536) {
    const piece = data.subarray(i, Math.min(data.length, i + 65536));
    const n = piece.length - 1;
    if (n < 60) parts.push(Buffer.from([n << 2]));
    else if (n < 256) parts.push(Buffer.from([60 << 2, n]));
    else parts.push(Buffer.from([61 << 2, n & 0xff, n >> 8]));
    parts.push(piece);
  }
  return Buffer.concat(parts);
}

const BYTE_ARRAY = 6;
const INT64 = 2;

/** columns: [{ name, type: 'utf8' | 'int64', values }] with equal lengths; all values non-null. */
function writeParquet(columns) {
  const numRows = columns[0].values.length;
  const parts = [Buffer.from('PAR1')];
  let offset = 4;
  const chunks = [];
  for (const col of columns) {
    const values = col.values.map((v) => {
      if (col.type === 'int64') {
        const b = Buffer.alloc(8);
        b.writeBigInt64LE(BigInt(v));
        return b;
      }
      const s = Buffer.from(v, 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(s.length);
      return Buffer.concat([len, s]);
    });
    // definition levels, all 1 (present): one RLE run, prefixed by its byte length (data page v1)
    const rle = new Thrift();
    rle.varint(numRows << 1);
    rle.bytes.push(1);
    const levels = rle.buffer();
    const levelLen = Buffer.alloc(4);
    levelLen.writeUInt32LE(levels.length);
    const raw = Buffer.concat([levelLen, levels, ...values]);
    const page = snappyLiteral(raw);
    const header = new Thrift();
    header.rawStruct((ph) => {
      ph.i32(1, 0); // DATA_PAGE
      ph.i32(2, raw.length);
      ph.i32(3, page.length);
      ph.struct(5, (t) => {
        t.i32(1, numRows);
        t.i32(2, 0); // PLAIN
        t.i32(3, 3); // RLE definition levels
        t.i32(4, 3); // RLE repetition levels
      });
    });
    const h = header.buffer();
    chunks.push({ col, offset, uncompressed: h.length + raw.length, compressed: h.length + page.length });
    parts.push(h, page);
    offset += h.length + page.length;
  }
  const meta = new Thrift();
  meta.rawStruct((m) => {
    m.i32(1, 1);
    m.list(2, 12, [null, ...columns], (t, col) =>
      t.rawStruct((s) => {
        if (col === null) {
          s.binary(4, 'schema');
          s.i32(5, columns.length);
        } else {
          s.i32(1, col.type === 'int64' ? INT64 : BYTE_ARRAY);
          s.i32(3, 1); // OPTIONAL, as pyarrow writes nullable fields
          s.binary(4, col.name);
          if (col.type === 'utf8') s.i32(6, 0); // converted type UTF8
        }
      }),
    );
    m.i64(3, numRows);
    m.list(4, 12, [0], (t) =>
      t.rawStruct((rg) => {
        rg.list(1, 12, chunks, (t2, c) =>
          t2.rawStruct((cc) => {
            cc.i64(2, c.offset);
            cc.struct(3, (md) => {
              md.i32(1, c.col.type === 'int64' ? INT64 : BYTE_ARRAY);
              md.list(2, 5, [0, 3], (t3, e) => t3.zigzag(e));
              md.list(3, 8, [c.col.name], (t3, n) => t3.rawBinary(n));
              md.i32(4, 1); // SNAPPY
              md.i64(5, numRows);
              md.i64(6, c.uncompressed);
              md.i64(7, c.compressed);
              md.i64(9, c.offset);
            });
          }),
        );
        rg.i64(
          2,
          chunks.reduce((a, c) => a + c.uncompressed, 0),
        );
        rg.i64(3, numRows);
      }),
    );
    m.binary(6, 'bitdistill scripts/make-data-fixtures.mjs');
  });
  const footer = meta.buffer();
  const footerLen = Buffer.alloc(4);
  footerLen.writeUInt32LE(footer.length);
  parts.push(footer, footerLen, Buffer.from('PAR1'));
  return Buffer.concat(parts);
}

write(
  'sst2.parquet',
  writeParquet([
    { name: 'sentence', type: 'utf8', values: sst2.map((r) => r[0]) },
    { name: 'label', type: 'int64', values: sst2.map((r) => r[1]) },
    { name: 'idx', type: 'int64', values: sst2.map((_, i) => i) },
  ]),
);
write(
  'corpus.parquet',
  writeParquet([
    { name: 'id', type: 'int64', values: corpusDocs.map((_, i) => i) },
    { name: 'text', type: 'utf8', values: corpusDocs },
  ]),
);
write('not-a.parquet', 'this is not a parquet file\n');
console.log(`wrote fixtures to ${out}`);
