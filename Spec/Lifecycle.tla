------------------------------ MODULE Lifecycle ------------------------------
(***************************************************************************)
(* Lifecycle of an aio context (fs/aio.c "kioctx"), and of the Swift       *)
(* ContextTable<Flavor> that ports it: creation with its failure paths,    *)
(* RCU-protected table slots, lookups that take a "users" reference,       *)
(* requests that hold "reqs" references, ring indices the user can write,  *)
(* the aio_nr request budget, destroy, the two release callbacks, and the  *)
(* double bounce that frees the context: reqs release -> call_rcu of the   *)
(* table's flavor -> work item -> free.                                    *)
(*                                                                         *)
(* Every action is one observable event of the implementation, with its    *)
(* parameters (context, thread, slot) explicit, so that a recorded trace   *)
(* can be replayed as a behaviour of this spec.  Spec/README.md maps each  *)
(* action to the kernel function and the Swift method.                     *)
(*                                                                         *)
(* The references use the count/mode/dead view of RefCount.tla; their      *)
(* per-CPU representation is PercpuRef.tla, which refines that view        *)
(* (Proofs/PercpuRefRefinement.tla).  A get or put here is one step: it    *)
(* runs inside a read section of the reference's flavor that begins and    *)
(* ends within the step.                                                   *)
(*                                                                         *)
(* Bug selects a broken variant for TLC to refute:                         *)
(*   "InternalGracePeriod"  reqs release schedules the free directly,      *)
(*                          trusting the grace period percpu_ref used for  *)
(*                          its own mode switch (2018 seed);               *)
(*   "RingCount"            teardown waits until the user-writable ring    *)
(*                          indices say every request completed, instead   *)
(*                          of waiting for the reqs reference (2013 seed); *)
(*   "BudgetLeak"           a failed table insert keeps its aio_nr share   *)
(*                          (2013 seed);                                   *)
(*   "GetNotTryget"         lookup takes users with percpu_ref_get         *)
(*                          instead of percpu_ref_tryget_live;             *)
(*   "FreeWithPercpuRefFlavor"  reqs release queues the free on the        *)
(*                          percpu_ref's flavor, not the table's;          *)
(*   "UnlockBeforeTryget"   lookup leaves the read section before its      *)
(*                          tryget_live;                                   *)
(*   "KillBeforeUnpublish"  destroy kills users before it empties the slot;*)
(*   "TrygetNotLive"        lookup uses percpu_ref_tryget, not _live;      *)
(*   "FreeInCallback"       the RCU callback frees the context itself,     *)
(*                          with no work item;                             *)
(*   "UsersReleaseSkipsKillReqs"  users' release puts reqs without         *)
(*                          killing it;                                    *)
(*   "ReqsReleaseTwice"     reqs' release can run a second time.           *)
(***************************************************************************)
EXTENDS Naturals, FiniteSets, RefCount

CONSTANTS
    Contexts,       \* kioctx objects; each is created at most once
    Threads,        \* user threads calling io_submit/io_getevents/io_destroy
    Slots,          \* entries of mm->ioctx_table->table[]
    MaxRequests,    \* nr_events of every context (its share of aio_nr)
    AioMaxNr,       \* aio_max_nr, the system-wide request budget
    Flavors,        \* RCU flavors
    TableFlavor,    \* flavor protecting table slots (lookup_ioctx: rcu)
    RefFlavor,      \* flavor of percpu_ref's internal switch (sched-RCU)
    RefInitModes,   \* percpu_ref_init modes a context may start its refs in
    NoContext,      \* an empty slot / a thread holding nothing
    Bug

Bugs == {"None", "InternalGracePeriod", "RingCount", "BudgetLeak",
         "GetNotTryget", "FreeWithPercpuRefFlavor", "UnlockBeforeTryget",
         "KillBeforeUnpublish", "TrygetNotLive", "FreeInCallback",
         "UsersReleaseSkipsKillReqs", "ReqsReleaseTwice"}

ASSUME /\ Bug \in Bugs
       /\ {TableFlavor, RefFlavor} \subseteq Flavors
       /\ RefInitModes \subseteq {"percpu", "atomic"} /\ RefInitModes # {}
       /\ MaxRequests \in Nat \ {0} /\ AioMaxNr \in Nat
       /\ NoContext \notin Contexts

VARIABLES
    ctxState,   \* ctxState[c]: see CtxStates
    table,      \* table[s]: the context published in slot s, or NoContext
    aioNr,      \* aio_nr: requests reserved by contexts
    users,      \* users[c]: ctx->users, a RefCount record
    reqs,       \* reqs[c]: ctx->reqs, a RefCount record
    releaseRan, \* releaseRan[c]: release callbacks of c that have run
    inFlight,   \* inFlight[c]: submitted requests not yet completed
    reqsAvail,  \* reqsAvail[c]: ctx->reqs_available, the kernel's count
                \* of submissions it will still accept; the ring slots
                \* neither a request in flight nor an uncredited event
                \* holds (Uncredited)
    ring,       \* ring[c]: head and tail of the mmapped completion ring
    work,       \* work[c]: ctx->free_work is queued
    frees,      \* frees[c]: times c's memory was freed
    reader,     \* reader[t]: what thread t is doing with which context
    rcuReaders, rcuGp, rcuCallbacks

rcuVars == <<rcuReaders, rcuGp, rcuCallbacks>>
ctxVars == <<ctxState, table, aioNr, users, reqs, releaseRan, inFlight,
             reqsAvail, ring, work, frees>>
vars == <<ctxVars, reader, rcuVars>>

(* The rcu_heads of a context: the two percpu_ref switches (RefFlavor) and *)
(* ctx->free_rcu (TableFlavor).                                            *)
CallbackKinds == {"users", "reqs", "free"}
CallbackIds == CallbackKinds \X Contexts

RCU == INSTANCE RCU WITH Callbacks <- CallbackIds

(* unused    not yet allocated                                             *)
(* reserved  allocated, refs and ring set up, aio_nr reserved; not yet in  *)
(*           the table                                                     *)
(* live      published in a table slot                                     *)
(* dying     io_destroy ran: unpublished, users killed                     *)
(* freed     freed by the release path                                     *)
(* failed    creation failed; freed on ioctx_alloc's error path            *)
CtxStates == {"unused", "reserved", "live", "dying", "freed", "failed"}

IsFreed(c) == ctxState[c] \in {"freed", "failed"}

(* idle: nothing; loaded: inside a TableFlavor read section with a pointer *)
(* to ctx loaded from a slot; holding: holds a users reference on ctx.     *)
Idle == [phase |-> "idle", ctx |-> NoContext]
ReaderStates ==
    {Idle} \cup [phase: {"loaded", "holding"}, ctx: Contexts]

RingIndex == 0..MaxRequests   \* the ring has MaxRequests + 1 slots

(* Unallocated references, for contexts not (or no longer) allocated.      *)
NoRef == [count |-> 0, mode |-> "percpu", dead |-> FALSE,
          forceAtomic |-> FALSE, releases |-> 0]

TypeOK ==
    /\ ctxState \in [Contexts -> CtxStates]
    /\ table \in [Slots -> Contexts \cup {NoContext}]
    /\ aioNr \in Nat
    /\ users \in [Contexts -> RefRecords]
    /\ reqs \in [Contexts -> RefRecords]
    /\ releaseRan \in [Contexts -> SUBSET {"users", "reqs"}]
    /\ inFlight \in [Contexts -> Nat]
    /\ reqsAvail \in [Contexts -> 0..MaxRequests]
    /\ ring \in [Contexts -> [head: RingIndex, tail: RingIndex]]
    /\ work \in [Contexts -> BOOLEAN]
    /\ frees \in [Contexts -> Nat]
    /\ reader \in [Threads -> ReaderStates]
    /\ RCU!TypeOK

Init ==
    /\ ctxState = [c \in Contexts |-> "unused"]
    /\ table = [s \in Slots |-> NoContext]
    /\ aioNr = 0
    /\ users = [c \in Contexts |-> NoRef]
    /\ reqs = [c \in Contexts |-> NoRef]
    /\ releaseRan = [c \in Contexts |-> {}]
    /\ inFlight = [c \in Contexts |-> 0]
    /\ reqsAvail = [c \in Contexts |-> 0]
    /\ ring = [c \in Contexts |-> [head |-> 0, tail |-> 0]]
    /\ work = [c \in Contexts |-> FALSE]
    /\ frees = [c \in Contexts |-> 0]
    /\ reader = [t \in Threads |-> Idle]
    /\ RCU!Init

Loading(t, c) == reader[t] = [phase |-> "loaded", ctx |-> c]
Holding(t, c) == reader[t] = [phase |-> "holding", ctx |-> c]

(* Completed events the ring shows: tail - head modulo the ring size.      *)
RingEvents(c) == (ring[c].tail - ring[c].head + MaxRequests + 1)
                    % (MaxRequests + 1)

(* Events posted and not yet credited back to reqs_available             *)
(* (ctx->completed_events; Swift: CompletionRing's postedNotCredited).     *)
(* Each of the MaxRequests ring slots is available, held by a request in   *)
(* flight, or held by such an event.                                       *)
Uncredited(c) == MaxRequests - reqsAvail[c] - inFlight[c]

(* refill_reqs_available() with the ring's head at `head`: of the          *)
(* uncredited events, those no longer between head and tail were reaped,   *)
(* and their slots are available again.  The head is the user's to write:  *)
(* a wrong one can delay slots, never credit more than Uncredited(c).      *)
(* Swift: CompletionRing.refill.                                           *)
Refilled(c, head) ==
    LET inRing == (ring[c].tail - head + MaxRequests + 1) % (MaxRequests + 1)
    IN reqsAvail[c] + (IF Uncredited(c) > inRing THEN Uncredited(c) - inRing
                                                ELSE 0)

(* RingCount models the code before 2013, which had no reqs reference.     *)
UsesReqsRef == Bug # "RingCount"

(* users' release callback cancels every request: cancelled requests must  *)
(* complete.                                                               *)
Cancelled(c) == "users" \in releaseRan[c]

(* The flavor of ctx->free_rcu: the table's, since the grace period must   *)
(* wait for lookup_ioctx's readers.  FreeWithPercpuRefFlavor takes the     *)
(* flavor percpu_ref switches under (Swift: a ContextTable<Flavor> whose   *)
(* reqs release called Ref's flavor instead of Flavor.call).               *)
FreeFlavor == IF Bug = "FreeWithPercpuRefFlavor" THEN RefFlavor
                                                 ELSE TableFlavor

Published(c) == \E s \in Slots : table[s] = c

(* The end of lookup_ioctx's read section, in the step that takes (or     *)
(* fails to take) users.  UnlockBeforeTryget left it earlier, in           *)
(* LookupUnlockEarly, so the tryget runs on a pointer no grace period      *)
(* waits for.                                                              *)
LookupUnlock(t) ==
    IF Bug = "UnlockBeforeTryget"
    THEN t \notin rcuReaders[TableFlavor] /\ RCU!Unchanged
    ELSE RCU!ReadUnlock(t, TableFlavor)

(* percpu_ref_tryget_live() in lookup_ioctx; TrygetNotLive:                *)
(* percpu_ref_tryget(), which succeeds on a killed ref until it is zero    *)
(* (Swift: tryGet() in place of tryGetLive() in ContextTable.lookup).      *)
LookupCanGet(r) == IF Bug = "TrygetNotLive" THEN CanTryGet(r)
                                            ELSE CanTryGetLive(r)

(* KillBeforeUnpublish: the destroying thread is between its kill and its  *)
(* unpublish; it drops its users reference only after both.                *)
MidDestroy(c) ==
    Bug = "KillBeforeUnpublish" /\ ctxState[c] = "dying" /\ Published(c)

-----------------------------------------------------------------------------
(* Creating a context: ioctx_alloc().  Swift: ContextTable.create().       *)

(* ioctx_alloc() up to the aio_nr reservation: allocate the kioctx,        *)
(* percpu_ref_init(&ctx->users), percpu_ref_init(&ctx->reqs) plus the      *)
(* extra reqs reference free_ioctx_users() drops, aio_setup_ring(),        *)
(* aio_nr += max_reqs.                                                     *)
CreateReserve(c, mode) ==
    /\ ctxState[c] = "unused"
    /\ aioNr + MaxRequests <= AioMaxNr
    /\ ctxState' = [ctxState EXCEPT ![c] = "reserved"]
    /\ aioNr' = aioNr + MaxRequests
    /\ users' = [users EXCEPT ![c] = NewRef(mode)]
    /\ reqs' = [reqs EXCEPT ![c] = IF UsesReqsRef THEN Got(NewRef(mode))
                                                   ELSE NoRef]
    /\ reqsAvail' = [reqsAvail EXCEPT ![c] = MaxRequests]
    /\ UNCHANGED <<table, releaseRan, inFlight, ring, work, frees, reader,
                   rcuVars>>

(* ioctx_alloc() fails before touching aio_nr: kmem_cache_zalloc,          *)
(* percpu_ref_init or aio_setup_ring returned an error (-ENOMEM).          *)
CreateFailsNoMemory(c) ==
    /\ ctxState[c] = "unused"
    /\ ctxState' = [ctxState EXCEPT ![c] = "failed"]
    /\ UNCHANGED <<table, aioNr, users, reqs, releaseRan, inFlight,
                   reqsAvail, ring, work, frees, reader, rcuVars>>

(* ioctx_alloc() finds aio_nr + nr_events over aio_max_nr (-EAGAIN).       *)
CreateFailsBudget(c) ==
    /\ ctxState[c] = "unused"
    /\ aioNr + MaxRequests > AioMaxNr
    /\ ctxState' = [ctxState EXCEPT ![c] = "failed"]
    /\ UNCHANGED <<table, aioNr, users, reqs, releaseRan, inFlight,
                   reqsAvail, ring, work, frees, reader, rcuVars>>

(* ioctx_add_table(): rcu_assign_pointer(table->table[s], ctx).            *)
CreatePublish(c, s) ==
    /\ ctxState[c] = "reserved"
    /\ table[s] = NoContext
    /\ ctxState' = [ctxState EXCEPT ![c] = "live"]
    /\ table' = [table EXCEPT ![s] = c]
    /\ UNCHANGED <<aioNr, users, reqs, releaseRan, inFlight, reqsAvail,
                   ring, work, frees, reader, rcuVars>>

(* ioctx_add_table() fails: it looks for a free slot first and grows the  *)
(* table only when every slot is taken, and growing can fail (-ENOMEM;     *)
(* the Swift table has a fixed size and throws tableFull).  err_cleanup    *)
(* gives the reservation back with aio_nr_sub(), then frees the context,   *)
(* which no reader can have seen.  BudgetLeak skips aio_nr_sub().          *)
CreateFailsTableInsert(c) ==
    /\ ctxState[c] = "reserved"
    /\ \A s \in Slots : table[s] # NoContext
    /\ ctxState' = [ctxState EXCEPT ![c] = "failed"]
    /\ aioNr' = IF Bug = "BudgetLeak" THEN aioNr ELSE aioNr - MaxRequests
    /\ users' = [users EXCEPT ![c] = NoRef]
    /\ reqs' = [reqs EXCEPT ![c] = NoRef]
    /\ reqsAvail' = [reqsAvail EXCEPT ![c] = 0]
    /\ UNCHANGED <<table, releaseRan, inFlight, ring, work, frees, reader,
                   rcuVars>>

-----------------------------------------------------------------------------
(* Threads.  lookup_ioctx() is LookupLoad then one of LookupTrygetLive*;   *)
(* Swift: ContextTable.lookup(id:).  A lookup of an empty slot changes     *)
(* nothing and is a stuttering step.                                       *)

(* ctx = rcu_dereference(table->table[s]), the lookup's own part of       *)
(* LookupLoad; named apart because trace validation records the read lock  *)
(* and unlock as events of their own (TraceLifecycle.tla).                 *)
LoadSlot(t, s, c) ==
    /\ reader[t] = Idle
    /\ table[s] = c
    /\ c # NoContext
    /\ reader' = [reader EXCEPT ![t] = [phase |-> "loaded", ctx |-> c]]
    /\ UNCHANGED ctxVars

(* rcu_read_lock(); ctx = rcu_dereference(table->table[s]).                *)
LookupLoad(t, s, c) == LoadSlot(t, s, c) /\ RCU!ReadLock(t, TableFlavor)

(* percpu_ref_tryget_live(&ctx->users) succeeds (TrygetLiveOk, the part   *)
(* before the unlock, named apart like LoadSlot); rcu_read_unlock().       *)
TrygetLiveOk(t, c) ==
    /\ Bug # "GetNotTryget"
    /\ Loading(t, c)
    /\ LookupCanGet(users[c])
    /\ users' = [users EXCEPT ![c] = Got(@)]
    /\ reader' = [reader EXCEPT ![t] = [phase |-> "holding", ctx |-> c]]
    /\ UNCHANGED <<ctxState, table, aioNr, reqs, releaseRan, inFlight,
                   reqsAvail, ring, work, frees>>

LookupTrygetLiveOk(t, c) == TrygetLiveOk(t, c) /\ LookupUnlock(t)

(* percpu_ref_tryget_live(&ctx->users) fails (ctx is dying);               *)
(* rcu_read_unlock(); the lookup returns NULL.                             *)
TrygetLiveFails(t, c) ==
    /\ Bug # "GetNotTryget"
    /\ Loading(t, c)
    /\ ~LookupCanGet(users[c])
    /\ reader' = [reader EXCEPT ![t] = Idle]
    /\ UNCHANGED ctxVars

LookupTrygetLiveFails(t, c) == TrygetLiveFails(t, c) /\ LookupUnlock(t)

(* GetNotTryget: percpu_ref_get(&ctx->users), whatever state users is in;  *)
(* rcu_read_unlock().                                                      *)
LookupGet(t, c) ==
    /\ Bug = "GetNotTryget"
    /\ Loading(t, c)
    /\ users' = [users EXCEPT ![c] = Got(@)]
    /\ reader' = [reader EXCEPT ![t] = [phase |-> "holding", ctx |-> c]]
    /\ LookupUnlock(t)
    /\ UNCHANGED <<ctxState, table, aioNr, reqs, releaseRan, inFlight,
                   reqsAvail, ring, work, frees>>

(* UnlockBeforeTryget: rcu_read_unlock() right after the load, before the  *)
(* tryget (kernel: lookup_ioctx with the unlock moved above                *)
(* percpu_ref_tryget_live; Swift: ContextTable.lookup leaving the read     *)
(* section before users.tryGetLive()).                                     *)
LookupUnlockEarly(t, c) ==
    /\ Bug = "UnlockBeforeTryget"
    /\ Loading(t, c)
    /\ t \in rcuReaders[TableFlavor]
    /\ RCU!ReadUnlock(t, TableFlavor)
    /\ UNCHANGED <<ctxVars, reader>>

(* percpu_ref_put(&ctx->users) at the end of io_submit, io_getevents,      *)
(* io_destroy.  Swift: releasing the handle lookup(id:) returned.          *)
LookupPut(t, c) ==
    /\ Holding(t, c)
    /\ ~MidDestroy(c)
    /\ users' = [users EXCEPT ![c] = Put(@)]
    /\ reader' = [reader EXCEPT ![t] = Idle]
    /\ UNCHANGED <<ctxState, table, aioNr, reqs, releaseRan, inFlight,
                   reqsAvail, ring, work, frees, rcuVars>>

(* io_submit -> aio_get_req(): get_reqs_available(), which refills from   *)
(* the ring first when no slot is available (user_refill_reqs_available), *)
(* and percpu_ref_get(&ctx->reqs).  Swift: ContextTable.submit().          *)
SlotsForSubmit(c) ==
    IF reqsAvail[c] > 0 THEN reqsAvail[c] ELSE Refilled(c, ring[c].head)

Submit(t, c) ==
    /\ Holding(t, c)
    /\ SlotsForSubmit(c) > 0
    /\ reqsAvail' = [reqsAvail EXCEPT ![c] = SlotsForSubmit(c) - 1]
    /\ inFlight' = [inFlight EXCEPT ![c] = @ + 1]
    /\ reqs' = IF UsesReqsRef THEN [reqs EXCEPT ![c] = Got(@)] ELSE reqs
    /\ UNCHANGED <<ctxState, table, aioNr, users, releaseRan, ring, work,
                   frees, reader, rcuVars>>

(* io_destroy -> kill_ioctx(): atomic_xchg(&ctx->dead, 1) finds it 0,      *)
(* RCU_INIT_POINTER(table->table[id], NULL), aio_nr_sub(), vm_munmap of    *)
(* the ring, percpu_ref_kill(&ctx->users).  (If ctx->dead was already set  *)
(* kill_ioctx returns -EINVAL: a stuttering step.)  One step here; the     *)
(* kernel and Swift's ContextTable.destroy take three that other threads   *)
(* can observe apart (the slot cleared, aio_nr_sub, the kill), whose       *)
(* composition this is: TraceLifecycle.tla checks them as such.            *)
(* KillBeforeUnpublish kills here and unpublishes later, in                *)
(* DestroyUnpublish.                                                       *)
Unpublished(c) == [s \in Slots |-> IF table[s] = c THEN NoContext ELSE table[s]]

Destroy(t, c) ==
    /\ Holding(t, c)
    /\ ctxState[c] = "live"
    /\ users[c].mode # "switching"
    /\ ctxState' = [ctxState EXCEPT ![c] = "dying"]
    /\ table' = IF Bug = "KillBeforeUnpublish" THEN table ELSE Unpublished(c)
    /\ aioNr' = aioNr - MaxRequests
    /\ users' = [users EXCEPT ![c] = Killed(@)]
    /\ IF SwitchNeedsGracePeriod(users[c])
       THEN RCU!CallRcu(RefFlavor, <<"users", c>>)
       ELSE RCU!Unchanged
    /\ UNCHANGED <<reqs, releaseRan, inFlight, reqsAvail, ring, work,
                   frees, reader>>

(* KillBeforeUnpublish: the destroying thread empties the slot after its   *)
(* percpu_ref_kill(&ctx->users) (kernel: kill_ioctx with the table store   *)
(* moved below the kill; Swift: users.kill() before the slot store).       *)
DestroyUnpublish(t, c) ==
    /\ Bug = "KillBeforeUnpublish"
    /\ Holding(t, c)
    /\ MidDestroy(c)
    /\ table' = Unpublished(c)
    /\ UNCHANGED <<ctxState, aioNr, users, reqs, releaseRan, inFlight,
                   reqsAvail, ring, work, frees, reader, rcuVars>>

(* io_getevents() -> aio_read_events(): n of the events in the ring are    *)
(* reaped, the head moves past them, and their slots are credited back     *)
(* (refill_reqs_available).  Swift: ContextLease.reapEvents(maximum:),     *)
(* whose lease is the thread's users reference.  A reap of nothing that    *)
(* credits nothing is a stuttering step.                                   *)
Reap(t, c, n) ==
    /\ Holding(t, c)
    /\ n <= RingEvents(c)
    /\ LET head == (ring[c].head + n) % (MaxRequests + 1)
       IN /\ ring' = [ring EXCEPT ![c].head = head]
          /\ reqsAvail' = [reqsAvail EXCEPT ![c] = Refilled(c, head)]
    /\ UNCHANGED <<ctxState, table, aioNr, users, reqs, releaseRan,
                   inFlight, work, frees, reader, rcuVars>>

(* The user writes the mmapped ring's head itself: after reading events   *)
(* there (libaio does), or any value at all.  Nothing is credited until a  *)
(* later refill.  kill_ioctx unmaps the ring, so only while the context is *)
(* live.  Swift: a write through ContextLease.userRingIndices.             *)
UserWritesRingHead(c, v) ==
    /\ ctxState[c] = "live"
    /\ v # ring[c].head
    /\ ring' = [ring EXCEPT ![c].head = v]
    /\ UNCHANGED <<ctxState, table, aioNr, users, reqs, releaseRan,
                   inFlight, reqsAvail, work, frees, reader, rcuVars>>

-----------------------------------------------------------------------------
(* Requests and callbacks.                                                 *)

(* aio_complete(): post the event at ring->tail, then                      *)
(* percpu_ref_put(&ctx->reqs).  Swift: ContextTable's complete, or the     *)
(* completion of a cancelled request.                                      *)
Complete(c) ==
    /\ inFlight[c] > 0
    /\ inFlight' = [inFlight EXCEPT ![c] = @ - 1]
    /\ ring' = [ring EXCEPT ![c].tail = (@ + 1) % (MaxRequests + 1)]
    /\ reqs' = IF UsesReqsRef THEN [reqs EXCEPT ![c] = Put(@)] ELSE reqs
    /\ UNCHANGED <<ctxState, table, aioNr, users, releaseRan, reqsAvail,
                   work, frees, reader, rcuVars>>

(* percpu_ref_switch_to_atomic_rcu() for ctx->users (ref = "users") or     *)
(* ctx->reqs: the grace period of RefFlavor has ended; the count is exact  *)
(* and may be zero.  Swift: PercpuRef's switch callback.                   *)
RefSwitchConfirm(c, ref) ==
    /\ RCU!InvokeCallback(RefFlavor, <<ref, c>>)
    /\ IF ref = "users"
       THEN users' = [users EXCEPT ![c] = Confirmed(@)] /\ UNCHANGED reqs
       ELSE reqs' = [reqs EXCEPT ![c] = Confirmed(@)] /\ UNCHANGED users
    /\ UNCHANGED <<ctxState, table, aioNr, releaseRan, inFlight, reqsAvail,
                   ring, work, frees, reader>>

(* free_ioctx_users(), users' release callback: cancel every request on    *)
(* active_reqs, percpu_ref_kill(&ctx->reqs), percpu_ref_put(&ctx->reqs).   *)
(* (RingCount, the code before 2013: cancel, then schedule the             *)
(* free_ioctx() work item, which watches the ring.  UsersReleaseSkipsKill- *)
(* Reqs: the put without the kill, so reqs keeps its initial reference;    *)
(* Swift: the users release calling reqs.put() without reqs.kill().)       *)
(* Swift: ContextTable's users release.                                    *)
KillReqs(r) == IF Bug = "UsersReleaseSkipsKillReqs" THEN r ELSE Killed(r)

UsersRelease(c) ==
    /\ users[c].releases > 0
    /\ "users" \notin releaseRan[c]
    /\ releaseRan' = [releaseRan EXCEPT ![c] = @ \cup {"users"}]
    /\ IF UsesReqsRef
       THEN /\ reqs[c].mode # "switching"
            /\ reqs' = [reqs EXCEPT ![c] = Put(KillReqs(@))]
            /\ IF /\ SwitchNeedsGracePeriod(reqs[c])
                  /\ Bug # "UsersReleaseSkipsKillReqs"
               THEN RCU!CallRcu(RefFlavor, <<"reqs", c>>)
               ELSE RCU!Unchanged
            /\ UNCHANGED work
       ELSE /\ work' = [work EXCEPT ![c] = TRUE]
            /\ UNCHANGED reqs /\ RCU!Unchanged
    /\ UNCHANGED <<ctxState, table, aioNr, users, inFlight, reqsAvail, ring,
                   frees, reader>>

(* free_ioctx_reqs(), reqs' release callback:                              *)
(* call_rcu(&ctx->free_rcu, free_ioctx_rcufn) of the table's flavor.       *)
(* InternalGracePeriod (before 2018): schedule_work(&ctx->free_work)       *)
(* directly.  ReqsReleaseTwice: nothing stops a second run (Swift: the     *)
(* reqs release without its once-only guard), which queues free_rcu       *)
(* again while it may still be pending.                                    *)
(* Swift: ContextTable's reqs release.                                     *)
ReqsRelease(c) ==
    /\ reqs[c].releases > 0
    /\ "reqs" \notin releaseRan[c] \/ Bug = "ReqsReleaseTwice"
    /\ releaseRan' = [releaseRan EXCEPT ![c] = @ \cup {"reqs"}]
    /\ IF Bug = "InternalGracePeriod"
       THEN work' = [work EXCEPT ![c] = TRUE] /\ RCU!Unchanged
       ELSE UNCHANGED work /\ RCU!CallRcu(FreeFlavor, <<"free", c>>)
    /\ UNCHANGED <<ctxState, table, aioNr, users, reqs, inFlight, reqsAvail,
                   ring, frees, reader>>

(* free_ioctx_rcufn(): the grace period of the table's flavor has ended;   *)
(* INIT_WORK + schedule_work(&ctx->free_work).  (RingCount:                *)
(* free_ioctx_rcu() frees the context right here.  FreeInCallback does     *)
(* the same in today's code: free_ioctx_rcufn calling free_ioctx itself;   *)
(* Swift: the callRCU callback calling free() instead of handing it to     *)
(* CleanupHandOff.)                                                        *)
(* Swift: the callRCU callback that enqueues the free on the executor.     *)
FreesInCallback == Bug \in {"RingCount", "FreeInCallback"}

FreeRcuCallback(c) ==
    /\ RCU!InvokeCallback(FreeFlavor, <<"free", c>>)
    /\ IF FreesInCallback
       THEN /\ ctxState' = [ctxState EXCEPT ![c] = "freed"]
            /\ frees' = [frees EXCEPT ![c] = @ + 1]
            /\ UNCHANGED work
       ELSE /\ work' = [work EXCEPT ![c] = TRUE]
            /\ UNCHANGED <<ctxState, frees>>
    /\ UNCHANGED <<table, aioNr, users, reqs, releaseRan, inFlight,
                   reqsAvail, ring, reader>>

(* free_ioctx(), the work item: aio_free_ring(), free_percpu(),            *)
(* kmem_cache_free().  Swift: the executor job that frees the context.     *)
FreeWork(c) ==
    /\ ~FreesInCallback
    /\ work[c]
    /\ work' = [work EXCEPT ![c] = FALSE]
    /\ ctxState' = [ctxState EXCEPT ![c] = "freed"]
    /\ frees' = [frees EXCEPT ![c] = @ + 1]
    /\ UNCHANGED <<table, aioNr, users, reqs, releaseRan, inFlight,
                   reqsAvail, ring, reader, rcuVars>>

(* RingCount only: free_ioctx() before 2013, the work item users' release  *)
(* scheduled.  It adds the events the ring shows to reqs_available and     *)
(* sleeps until that reaches nr_events - 1 (MaxRequests here), then        *)
(* call_rcu(&ctx->rcu_head, free_ioctx_rcu).                               *)
RingLooksDrained(c) == reqsAvail[c] + RingEvents(c) >= MaxRequests

RingTeardown(c) ==
    /\ Bug = "RingCount"
    /\ work[c]
    /\ RingLooksDrained(c)
    /\ work' = [work EXCEPT ![c] = FALSE]
    /\ RCU!CallRcu(FreeFlavor, <<"free", c>>)
    /\ UNCHANGED <<ctxState, table, aioNr, users, reqs, releaseRan,
                   inFlight, reqsAvail, ring, frees, reader>>

(* The RCU core: a grace period starts or ends (no client state changes).  *)
GracePeriodStart(f) == RCU!GpStart(f) /\ UNCHANGED <<ctxVars, reader>>
GracePeriodEnd(f) == RCU!GpEnd(f) /\ UNCHANGED <<ctxVars, reader>>

(* The state with each ring's head and tail forgotten but for the events  *)
(* between them.  Every action, invariant and property depends on the two  *)
(* indices only through that difference (the user may write any head), so  *)
(* two states that differ by a rotation of a ring's indices have the same   *)
(* futures, rotated.  Configurations that refilling makes large check the  *)
(* spec with VIEW RingRotationView: one state per rotation class.           *)
RingRotationView ==
    <<ctxState, table, aioNr, users, reqs, releaseRan, inFlight, reqsAvail,
      [c \in Contexts |-> RingEvents(c)], work, frees, reader, rcuVars>>

(* Every context has been created and freed, or failed to be created:      *)
(* the system is done, which is not a deadlock.                            *)
Terminated == \A c \in Contexts : IsFreed(c)

Done == Terminated /\ UNCHANGED vars

-----------------------------------------------------------------------------
Next ==
    \/ \E c \in Contexts :
          \/ \E mode \in RefInitModes : CreateReserve(c, mode)
          \/ CreateFailsNoMemory(c)
          \/ CreateFailsBudget(c)
          \/ \E s \in Slots : CreatePublish(c, s)
          \/ CreateFailsTableInsert(c)
          \/ \E v \in RingIndex : UserWritesRingHead(c, v)
          \/ Complete(c)
          \/ \E ref \in {"users", "reqs"} : RefSwitchConfirm(c, ref)
          \/ UsersRelease(c)
          \/ ReqsRelease(c)
          \/ FreeRcuCallback(c)
          \/ FreeWork(c)
          \/ RingTeardown(c)
    \/ \E t \in Threads :
          \/ \E s \in Slots, c \in Contexts : LookupLoad(t, s, c)
          \/ \E c \in Contexts :
                \/ LookupTrygetLiveOk(t, c)
                \/ LookupTrygetLiveFails(t, c)
                \/ LookupGet(t, c)
                \/ LookupUnlockEarly(t, c)
                \/ LookupPut(t, c)
                \/ Submit(t, c)
                \/ \E n \in RingIndex : Reap(t, c, n)
                \/ Destroy(t, c)
                \/ DestroyUnpublish(t, c)
    \/ \E f \in Flavors : GracePeriodStart(f) \/ GracePeriodEnd(f)
    \/ Done

Spec == Init /\ [][Next]_vars

(* Fairness.  The system side (the RCU core, percpu_ref switch callbacks,  *)
(* release callbacks, the work queue, a creation that reserved its budget, *)
(* a cancelled request) gets one weak-fairness condition: each of those    *)
(* steps advances a finite chain, so a system step that stays enabled      *)
(* cannot be starved by other system steps forever.  Each thread inside a  *)
(* lookup finishes it, and each thread holding users eventually drops it.  *)
(* Nothing forces a user to destroy a context.                             *)
SystemStep ==
    \/ \E f \in Flavors : GracePeriodStart(f) \/ GracePeriodEnd(f)
    \/ \E c \in Contexts :
          \/ \E s \in Slots : CreatePublish(c, s)
          \/ CreateFailsTableInsert(c)
          \/ \E ref \in {"users", "reqs"} : RefSwitchConfirm(c, ref)
          \/ UsersRelease(c) \/ ReqsRelease(c)
          \/ FreeRcuCallback(c) \/ FreeWork(c) \/ RingTeardown(c)
          \/ Cancelled(c) /\ Complete(c)

LookupFinish(t) ==
    \E c \in Contexts : \/ LookupTrygetLiveOk(t, c)
                      \/ LookupTrygetLiveFails(t, c)
                      \/ LookupGet(t, c)

Fairness ==
    /\ WF_vars(SystemStep)
    /\ \A t \in Threads : /\ WF_vars(LookupFinish(t))
                         /\ WF_vars(\E c \in Contexts : LookupPut(t, c))

FairSpec == Spec /\ Fairness

-----------------------------------------------------------------------------
(* Safety.                                                                 *)

(* No thread dereferences or holds a freed context: not through a pointer  *)
(* loaded under rcu_read_lock, not through a users reference.              *)
NoUseAfterFree ==
    \A t \in Threads : reader[t] # Idle => ~IsFreed(reader[t].ctx)

(* No table slot points to a freed context.                                *)
NoDanglingSlot ==
    \A s \in Slots : table[s] # NoContext => ~IsFreed(table[s])

(* A context is freed at most once.                                        *)
FreedAtMostOnce == \A c \in Contexts : frees[c] <= 1

(* The release path frees a context only once users and reqs (where it     *)
(* exists) are both at zero and released, and no request is in flight.     *)
Released(r) == IsZero(r) /\ r.releases > 0

FreeOnlyWhenUnreferenced ==
    \A c \in Contexts : ctxState[c] = "freed" =>
        /\ Released(users[c])
        /\ UsesReqsRef => Released(reqs[c])
        /\ inFlight[c] = 0

(* aio_nr is exactly the share of the contexts that hold a reservation.    *)
BudgetMatchesLiveContexts ==
    aioNr = MaxRequests * Cardinality({c \in Contexts :
                                         ctxState[c] \in {"reserved", "live"}})

(* Nobody holds a users reference taken after users was released: what     *)
(* tryget_live guarantees and a plain get does not.                        *)
NoReferenceAfterRelease ==
    \A t \in Threads, c \in Contexts : Holding(t, c) => users[c].releases = 0

(* Each release callback is due at most once.                              *)
ReleasedAtMostOnce ==
    \A c \in Contexts : users[c].releases <= 1 /\ reqs[c].releases <= 1

(* An rcu_head is never queued while it is pending: it is in one stage of  *)
(* one flavor at a time.  A second call_rcu of a pending head shows at     *)
(* once as a head in two stages (or two flavors).                          *)
CallbacksNotRequeued ==
    /\ RCU!StagesConsistent
    /\ \A id \in CallbackIds : \A f, g \in Flavors :
          id \in RCU!Pending(f) /\ id \in RCU!Pending(g) => f = g

(* Action properties.                                                      *)

(* A lookup fails only for a context no longer in the table: lookups see   *)
(* destroy's unpublish and kill as one step.                               *)
LookupFailsOnlyWhenUnpublished ==
    [][\A t \in Threads, c \in Contexts :
          Loading(t, c) /\ reader'[t] = Idle => ~Published(c)']_vars

(* No lookup succeeds on a killed users reference: what tryget_live adds   *)
(* to tryget.                                                              *)
NoLookupSucceedsOnDeadRef ==
    [][\A t \in Threads, c \in Contexts :
          ~Holding(t, c) /\ Holding(t, c)' => ~users[c].dead]_vars

(* A context is freed only where blocking is allowed: not in a step that   *)
(* runs an RCU callback.  RCU callbacks run in softirq context (liburcu:   *)
(* on the call_rcu thread, which every flavor user shares), while          *)
(* free_ioctx() tears down the ring and the percpu counters (Swift: free() *)
(* may wait), which is why free_ioctx_rcufn only queues a work item.       *)
RunsRcuCallback ==
    \E f \in Flavors : rcuCallbacks[f].ready \ rcuCallbacks'[f].ready # {}

FreedOnlyWhereBlockingAllowed ==
    [][\A c \in Contexts : frees'[c] # frees[c] => ~RunsRcuCallback]_vars

-----------------------------------------------------------------------------
(* Liveness (under Fairness).                                              *)

(* Every destroyed context is eventually freed: no leak, no hang.          *)
DestroyedEventuallyFreed ==
    \A c \in Contexts : ctxState[c] = "dying" ~> ctxState[c] = "freed"

(* Every callback that becomes due eventually runs: the percpu_ref switch  *)
(* callbacks, the two release callbacks, the free_rcu callback and the     *)
(* free work item.  Each becomes due at most once per context and stops    *)
(* being due only by running, so "eventually none is due" says that each   *)
(* one ran.                                                                *)
Due(c) ==
    \/ <<"users", c>> \in RCU!Pending(RefFlavor)
    \/ <<"reqs", c>> \in RCU!Pending(RefFlavor)
    \/ users[c].releases > 0 /\ "users" \notin releaseRan[c]
    \/ reqs[c].releases > 0 /\ "reqs" \notin releaseRan[c]
    \/ <<"free", c>> \in RCU!Pending(FreeFlavor)
    \/ work[c]

CallbacksEventuallyRun == \A c \in Contexts : Due(c) ~> ~Due(c)
=============================================================================
