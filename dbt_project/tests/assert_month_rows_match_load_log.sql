-- Every stored month has exactly the rows of the accepted load it came from. Returns the months
-- whose load is missing from load_log, was not accepted, belongs to another month, or logged
-- another row count.

with

applications as (

    select * from {{ ref('int_applications_accumulated') }}

),

load_log as (

    select * from {{ source('creditflow', 'load_log') }}

),

stored_months as (

    select
        month,
        load_id,
        count(*) as stored_rows
    from applications
    group by month, load_id

),

accepted_loads as (

    select
        load_id,
        month,
        rows as logged_rows
    from load_log
    where outcome in ('loaded', 'replaced')

),

compared as (

    select
        stored_months.month,
        stored_months.load_id,
        stored_months.stored_rows,
        accepted_loads.month as logged_month,
        accepted_loads.logged_rows
    from stored_months
    left join accepted_loads
        on stored_months.load_id = accepted_loads.load_id

),

final as (

    select * from compared
    where
        logged_rows is null
        or logged_rows <> stored_rows
        or logged_month <> month

)

select * from final
