"""Grammars shared by the real-model tests."""

YES_NO = 'root ::= "yes" | "no"'

# A small JSON object: {"name": "<letters>", "age": <digits>}
PERSON_GBNF = r'''
root ::= "{" ws "\"name\"" ws ":" ws name ws "," ws "\"age\"" ws ":" ws age ws "}"
name ::= "\"" [A-Za-z ]{1,20} "\""
age ::= [0-9]{1,3}
ws ::= [ ]?
'''

PERSON_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20},
                   "age": {"type": "integer"}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
