"""`pimms demo`: a morning at PIMMS sites, played against the platform, every case checked.

Front-office tools send needs (valid, duplicate, invalid, without consent, not even JSON); every
partner is simulated in its own format and transport: EDF, La Poste, Orange (declared by data) and
the prefecture on their Kafka feeds, Eau du Grand Lyon in its folders (CSV files), SNCF and La
Banque Postale as small HTTP servers taking signed POSTs and POSTing signed answers back (a wrong
status word among the answers); a mediator withdraws a case solved at the desk; a visitor
withdraws another; EDF never answers one need and is chased to expiry (its `relance`, the
mediator's escalation) on the platform's steered clock; a naturalisation file lacking documents is
held until the visitor brings them, then sent and answered.
The table at the end shows each case, its reference, partners, final status and notifications;
the yearly review of the demo's year (`pimms report`) is written last.
Exit status 0 only if every case reached its expected state.

- `story.py`: the vocabulary (what is sent, reactions, expectations), as dataclasses and enums;
- `scenario.py`: the morning, as data;
- `partners.py`: the partner simulators, written from specs/partners.md, one class per partner;
- `transports.py`: the HTTP servers, folders and signed POSTs of partners outside Kafka;
- `frontdesk.py`: what a desk tool sends, with `Envelope` headers;
- `observer.py`: follows every story on the public topics and says what to send in reaction;
- `checks.py`: each expectation checked; `report.py`: the table; `run.py`: the loop;
- `clock.py`: platform time (the demo's own platform runs 43,200x faster); `yearly.py`: the review.
"""

from pimms_cli.demo.run import run_demo

__all__ = ["run_demo"]
